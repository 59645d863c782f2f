"""Prints 1 GiB to stdout. Expected: OutputLimitExceeded, quickly, with stdout truncated."""


def main():
    line = "x" * (1024 * 1024 - 1)
    for _ in range(1024):
        print(line)
    return "printed 1 GiB"
