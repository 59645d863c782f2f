"""The network allowlist's grammar and matching (``metadata.json`` ``network``)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from registry.core.model import Metadata
from registry.core.network import (
    Endpoint,
    NetworkAccess,
    access_change,
    allowed,
    parse_endpoint,
)


@pytest.mark.parametrize(
    ("text", "host", "port", "shown"),
    [
        ("api.example.com:443", "api.example.com", 443, "api.example.com:443"),
        ("API.Example.COM.:443", "api.example.com", 443, "api.example.com:443"),
        ("127.0.0.1:8080", "127.0.0.1", 8080, "127.0.0.1:8080"),
        ("[::1]:8080", "::1", 8080, "[::1]:8080"),
        ("[2001:DB8::0:1]:1", "2001:db8::1", 1, "[2001:db8::1]:1"),
        ("localhost:65535", "localhost", 65535, "localhost:65535"),
        ("xn--bcher-kva.example:80", "xn--bcher-kva.example", 80, "xn--bcher-kva.example:80"),
    ],
)
def test_endpoints_are_normalized(text: str, host: str, port: int, shown: str) -> None:
    endpoint = parse_endpoint(text)
    assert endpoint == Endpoint(host, port)
    assert str(endpoint) == shown


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("api.example.com", "has no port"),
        ("api.example.com:", "port '' must be a number"),
        ("api.example.com:0", "from 1 to 65535"),
        ("api.example.com:65536", "from 1 to 65535"),
        ("api.example.com:https", "must be a number"),
        ("api.example.com:٤٤٣", "must be a number"),
        ("*.example.com:443", "wildcards are not allowed"),
        ("::1:8080", "in brackets"),
        ("[127.0.0.1]:80", "is not an IPv6 address"),
        ("[::1]8080", "written [addr]:port"),
        (" api.example.com:443", "no spaces"),
        ("api_example.com:443", "is not a host name"),
        ("-api.example.com:443", "is not a host name"),
        ("a..b:443", "is not a host name"),
        ("999.1.1.1:80", "neither an IPv4 address nor a host name"),
        ("http://api.example.com:443", "without a scheme or a path"),
        ("api.example.com:443/v1", "without a scheme or a path"),
        (":443", "has no port"),
    ],
)
def test_bad_endpoints_say_what_to_write(text: str, words: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_endpoint(text)
    assert words in str(caught.value)
    assert repr(text) in str(caught.value)


def test_the_allowlist_matches_exactly() -> None:
    allow = NetworkAccess(allow=["api.example.com:443", "127.0.0.1:8080", "[::1]:9"]).endpoints()
    assert allowed(allow, "api.example.com", 443)
    assert allowed(allow, "API.EXAMPLE.COM.", 443)
    assert allowed(allow, "127.0.0.1", 8080)
    assert allowed(allow, "::1", 9)
    assert allowed(allow, "0:0:0:0:0:0:0:1", 9)
    assert not allowed(allow, "api.example.com", 80)  # another port of an allowed host
    assert not allowed(allow, "www.api.example.com", 443)  # no implicit subdomains
    assert not allowed(allow, "example.com", 443)
    assert not allowed(allow, "127.0.0.2", 8080)
    assert not allowed(allow, "localhost", 8080)  # a name is not the address it resolves to
    assert not allowed(allow, "127.0.0.1 ", 8080)
    assert not allowed(allow, "*", 443)


@pytest.mark.parametrize(
    ("network", "words"),
    [
        ({"allow": []}, "at least 1"),
        ({"allow": ["a.example:1", "A.example:1"]}, "repeats 'a.example:1'"),
        ({"allow": [f"h{i}.example:1" for i in range(65)]}, "at most 64"),
        ({"allow": ["a.example:1"], "deny": []}, "Extra inputs are not permitted"),
        ({"allow": "a.example:1"}, "valid list"),
        ({"allow": ["a.example"]}, "has no port"),
    ],
)
def test_metadata_refuses_a_bad_allowlist_naming_the_field(
    network: dict[str, object], words: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Metadata.model_validate({"id": "p", "name": "P", "network": network})
    text = str(caught.value)
    assert "network" in text and words in text, text


def test_metadata_keeps_the_allowlist_and_omits_it_when_absent() -> None:
    meta = Metadata(id="p", name="P", network=NetworkAccess(allow=["api.example.com:443"]))
    data = json.loads(meta.to_json())
    assert data["network"] == {"allow": ["api.example.com:443"]}
    assert Metadata.model_validate_json(meta.to_json()) == meta
    assert "network" not in json.loads(Metadata(id="p", name="P").to_json())


def test_access_change_names_what_was_added_and_removed() -> None:
    old = NetworkAccess(allow=["a.example:1", "b.example:2"])
    new = NetworkAccess(allow=["B.example:2", "c.example:3"])
    added, removed = access_change(old, new)
    assert [str(e) for e in added] == ["c.example:3"]
    assert [str(e) for e in removed] == ["a.example:1"]
    assert access_change(None, None) == ([], [])
    assert [str(e) for e in access_change(None, old)[0]] == ["a.example:1", "b.example:2"]
