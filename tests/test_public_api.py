"""The public API is what registry/__init__.py exports; nothing public is left out."""

from __future__ import annotations

import importlib
import inspect

import registry
from registry import _EXPORTS

# Modules whose public classes and functions users reach for: each must be exported.
USER_FACING = {
    "registry.errors": None,  # every error type
    "registry.api": {
        "Registry",
        "AsyncRegistry",
        "RegistryTimeout",
        "ProcedureSummary",
        "ProcedureDetail",
        "VersionInfo",
        "HistoryEntry",
        "ProcedureDiff",
    },
}


def test_every_exported_name_resolves() -> None:
    for name in registry.__all__:
        assert getattr(registry, name) is not None, name
    assert sorted(registry.__all__) == sorted(_EXPORTS)


def test_every_error_type_is_exported() -> None:
    errors = importlib.import_module("registry.errors")
    public = {
        name
        for name, obj in inspect.getmembers(errors, inspect.isclass)
        if obj.__module__ == "registry.errors" and not name.startswith("_")
    }
    assert public <= set(registry.__all__)


def test_api_models_and_entry_points_are_exported() -> None:
    api = USER_FACING["registry.api"]
    assert api is not None
    assert api <= set(registry.__all__)
    assert {"RunResult", "Metrics", "SyncReport", "Drift", "Metadata"} <= set(registry.__all__)


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        registry.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")
