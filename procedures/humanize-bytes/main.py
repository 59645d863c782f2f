"""Format a byte count for people: 1536 -> "1.5 kB" or "1.5 KiB"."""

_SI = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_IEC = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def main(size: int, binary: bool = False, precision: int = 1) -> str:
    """Return ``size`` bytes as a short human string.

    SI units (kB = 1000 bytes) by default, IEC units (KiB = 1024 bytes) when
    ``binary`` is true. Byte counts below one unit are shown whole ("999 B");
    larger ones with ``precision`` decimals, moving to the next unit when
    rounding reaches it (999 950 bytes is "1.0 MB", not "1000.0 kB").
    Negative sizes keep their sign.
    """
    if isinstance(size, bool) or not isinstance(size, int | float) or size != int(size):
        raise ValueError(f"size must be a whole number of bytes, got {size!r}")
    if not 0 <= precision <= 6:
        raise ValueError(f"precision must be between 0 and 6, got {precision}")
    units, base = (_IEC, 1024) if binary else (_SI, 1000)
    sign = "-" if size < 0 else ""
    count = abs(int(size))
    if count < base:
        return f"{sign}{count} B"
    exponent = 1
    while exponent < len(units) - 1 and count >= base ** (exponent + 1):
        exponent += 1
    text = f"{count / base**exponent:.{precision}f}"
    if float(text) >= base and exponent < len(units) - 1:
        exponent += 1
        text = f"{count / base**exponent:.{precision}f}"
    return f"{sign}{text} {units[exponent]}"
