"""The cache of what git objects proved: a rebuild reuses it, and never trusts a stale one."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from registry.config import Config, ValidationSection
from registry.core import validation
from registry.git.store import GitStore
from registry.index import objcache, rows
from registry.index.connect import open_backend
from registry.index.contract import CacheUpdate, ChangeSet, IndexBackend
from registry.index.sync import sync, verify
from tests.helpers import commit_all, tag_release, write_proc

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def repo(repo: Path) -> Path:
    """The three procedures (see conftest), alpha and beta released."""
    tag_release(repo, "alpha", "1.0.0")
    tag_release(repo, "beta", "1.0.0")
    return repo


@pytest.fixture
def validated(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of every folder validated from here on."""
    seen: list[str] = []
    real = validation.validate_snapshot

    def counting(snapshot: Any, config: Any = None) -> validation.ValidationResult:
        seen.append(snapshot.id)
        return real(snapshot, config)

    monkeypatch.setattr(rows, "validate_snapshot", counting)
    return seen


@pytest.fixture
def tags_read(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of every tag object read from here on."""
    seen: list[str] = []
    real = GitStore.tag_at

    def counting(self: GitStore, name: str, target: str) -> Any:
        seen.append(name)
        return real(self, name, target)

    monkeypatch.setattr(GitStore, "tag_at", counting)
    return seen


async def _open(root: Path, db_url: str | None) -> tuple[GitStore, IndexBackend]:
    store = GitStore.open(root)
    return store, await open_backend(store, db_url)


def test_a_second_rebuild_validates_nothing_and_writes_the_same_rows(
    repo: Path, db_url: str | None, validated: list[str], tags_read: list[str]
) -> None:
    async def body() -> None:
        store, backend = await _open(repo, db_url)
        async with backend:
            await sync(store, backend, full=True)
            assert sorted(validated) == ["alpha", "beta", "gamma"]
            assert len(tags_read) == 2
            cold = await backend.snapshot()
            validated.clear()
            tags_read.clear()
            report = await sync(store, backend, full=True)
            assert report.rebuilt and validated == [] and tags_read == []
            assert await backend.snapshot() == cold
            assert await verify(store, backend) == []

    run(body())


def test_a_changed_folder_alone_is_validated_again(
    repo: Path, db_url: str | None, validated: list[str]
) -> None:
    async def body() -> None:
        store, backend = await _open(repo, db_url)
        async with backend:
            await sync(store, backend, full=True)
            write_proc(repo, "beta", description="Beta now parses invoices.")
            commit_all(repo, "beta changes")
            validated.clear()
            await sync(store, backend, full=True)
            assert validated == ["beta"]
            # the cache holds what this rebuild used: beta's old tree is gone from it
            fp = objcache.fingerprint(Config().validation, store.folder)
            trees = store.tree_ids("HEAD")
            assert {k for kind, k in await backend.object_cache(fp) if kind == "procedure"} == {
                f"{pid} {tree}" for pid, tree in trees.items()
            }
            beta = await backend.get_procedure("beta")
            assert beta is not None and beta.description == "Beta now parses invoices."
            assert await verify(store, backend) == []

    run(body())


def test_other_rules_or_other_code_validate_everything_again(
    repo: Path, db_url: str | None, validated: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    strict = Config(validation=ValidationSection(max_file_bytes=10))

    async def body() -> None:
        store, backend = await _open(repo, db_url)
        async with backend:
            await sync(store, backend, full=True)
            validated.clear()
            # rules under which every folder is invalid: the cached valid rows must not count
            await sync(store, backend, full=True, config=strict)
            assert sorted(validated) == ["alpha", "beta", "gamma"]
            alpha = await backend.get_procedure("alpha")
            assert alpha is not None and not alpha.valid
            assert any("file-too-large" in e for e in alpha.errors)
            validated.clear()
            # the same rules again, but the validator's code changed
            monkeypatch.setattr(objcache, "code_fingerprint", lambda: "other code")
            await sync(store, backend, full=True, config=strict)
            assert sorted(validated) == ["alpha", "beta", "gamma"]
            assert await verify(store, backend, config=strict) == []

    run(body())


def test_an_unreadable_cache_entry_is_validated_again(
    repo: Path, db_url: str | None, validated: list[str]
) -> None:
    async def body() -> None:
        store, backend = await _open(repo, db_url)
        async with backend:
            report = await sync(store, backend, full=True)
            good = await backend.snapshot()
            state = await backend.sync_state(report.ref)
            assert state is not None and report.commit is not None and state.tags_digest
            fp = objcache.fingerprint(Config().validation, store.folder)
            known = await backend.object_cache(fp)
            alpha = next(k for k in known if k[1].startswith("alpha "))
            # a cache row this code cannot read (written by hand, or by a bug)
            broken = ChangeSet(
                ref=report.ref,
                commit=report.commit,
                tags_digest=state.tags_digest,
                object_cache=CacheUpdate(fingerprint=fp, put=[(*alpha, fp, "{not json")]),
            )
            await backend.apply(broken)
            validated.clear()
            await sync(store, backend, full=True)
            assert validated == ["alpha"]
            assert await backend.snapshot() == good

    run(body())


def test_a_rebuild_from_an_invalid_folder_finds_its_last_valid_state_warm(
    repo: Path, db_url: str | None
) -> None:
    async def body() -> None:
        store, backend = await _open(repo, db_url)
        async with backend:
            await sync(store, backend)
            (repo / "procedures" / "alpha" / "main.py").write_text("def main(text:\n")
            commit_all(repo, "break alpha")
            for _ in range(2):  # cold, then from the cache
                report = await sync(store, backend, full=True)
                assert report.invalid == ["alpha"]
                alpha = await backend.get_procedure("alpha")
                assert alpha is not None and not alpha.valid
                assert alpha.description == "The alpha procedure."
                assert await verify(store, backend) == []

    run(body())
