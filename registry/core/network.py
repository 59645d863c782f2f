"""Network allowlists: the ``network`` field of ``metadata.json`` and what the proxy decides.

A procedure without ``network`` has none. With ``{"allow": ["api.example.com:443",
"127.0.0.1:8080"]}`` its run may reach exactly those host:port pairs, through the
filtering proxy of :mod:`registry.sandbox.netproxy`; names are resolved by the
proxy, never inside the sandbox. Matching is exact: a name allows that name (case
does not matter, a trailing dot is dropped), an address allows that address; no
wildcards, no ranges, no "any port". Pure: no sockets here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_ALLOWED = 64
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True, order=True)
class Endpoint:
    """One host:port pair, normalized (lower-case name, canonical address)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """``"host:port"`` (IPv6 as ``"[addr]:port"``) as an :class:`Endpoint`; ValueError says why."""
    if not isinstance(text, str) or not text or text != text.strip():
        raise ValueError(f"{text!r} is not host:port (no spaces, e.g. 'api.example.com:443')")
    if "://" in text or "/" in text:
        raise ValueError(f"{text!r}: write host:port alone, without a scheme or a path")
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r}: an IPv6 address is written [addr]:port, e.g. '[::1]:8080'")
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} in brackets is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r} has no port: write host:port, e.g. '{text}:443'")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. '[::1]:8080'")
    return Endpoint(normalize_host(host, text), _port(port, text))


def normalize_host(host: str, text: str | None = None) -> str:
    """A host as the allowlist compares it; ValueError for what is neither name nor address."""
    where = repr(text if text is not None else host)
    if "*" in host:
        raise ValueError(f"{where}: wildcards are not allowed; list each host:port it needs")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.lower().removesuffix(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(
            f"{where}: {host!r} is not a host name (letters, digits and hyphens in dot-separated "
            "labels) or an IP address"
        )
    if labels[-1].isdigit():
        raise ValueError(f"{where}: {host!r} is neither an IPv4 address nor a host name")
    return name


def _port(text: str, whole: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{whole!r}: the port {text!r} must be a number from 1 to 65535")
    return int(text)


class NetworkAccess(BaseModel):
    """``metadata.json`` ``network``: the only host:port pairs a run may reach."""

    model_config = ConfigDict(extra="forbid")

    allow: list[str] = Field(
        min_length=1,
        max_length=MAX_ALLOWED,
        description="host:port pairs a run may reach through procreg's proxy, e.g. "
        '"api.example.com:443" or "[::1]:8080"; exact matches only.',
    )

    @field_validator("allow")
    @classmethod
    def _endpoints(cls, allow: list[str]) -> list[str]:
        seen: dict[Endpoint, str] = {}
        for text in allow:
            endpoint = parse_endpoint(text)
            if endpoint in seen:
                raise ValueError(f"{text!r} repeats {seen[endpoint]!r}; list it once")
            seen[endpoint] = text
        return allow

    def endpoints(self) -> frozenset[Endpoint]:
        """The allowlist, normalized."""
        return frozenset(parse_endpoint(text) for text in self.allow)


def allowed(allow: frozenset[Endpoint], host: str, port: int) -> bool:
    """Whether a request for ``host:port`` matches ``allow`` exactly."""
    try:
        return Endpoint(normalize_host(host), port) in allow
    except ValueError:
        return False


def access_change(
    old: NetworkAccess | None, new: NetworkAccess | None
) -> tuple[list[Endpoint], list[Endpoint]]:
    """What a change of ``network`` adds and removes (each sorted)."""
    before = old.endpoints() if old else frozenset()
    after = new.endpoints() if new else frozenset()
    return sorted(after - before), sorted(before - after)


class NetworkDenial(BaseModel):
    """One request the proxy refused: where to (as the run asked), when, and why."""

    model_config = ConfigDict(defer_build=True)  # runs build it; `procreg show` does not

    target: str
    at: str
    reason: str
