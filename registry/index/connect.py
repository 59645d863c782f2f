"""Opening the index: which backend a target names, and where the embedded one lives.

The contract (:mod:`registry.index.contract`) knows no backend; this module is the
one place that picks :mod:`registry.index.sqlite` or :mod:`registry.index.postgres`
for a target: a ``postgresql://`` URL, else a SQLite file (by default
``.git/procreg/index.sqlite3``, inside ``.git`` and so never committed).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.errors import IndexCorrupt, IndexUnavailable, UsageError
from registry.index.contract import IndexBackend

if TYPE_CHECKING:
    from registry.git.store import GitStore

log = logging.getLogger(__name__)

DATABASE_URL_ENV = "PROCREG_DATABASE_URL"
"""Environment variable naming a PostgreSQL index (``postgresql://...``)."""

INDEX_FILE = Path("procreg") / "index.sqlite3"
"""Where the SQLite index lives, relative to the repository's ``.git`` folder."""


def is_postgres_url(target: str | Path) -> bool:
    """Whether ``target`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


async def connect_index(target: str | Path) -> IndexBackend:
    """Open the backend ``target`` names: a ``postgresql://`` URL, else a SQLite file path."""
    # imported here: a SQLite user never loads asyncpg, nor a PostgreSQL one sqlite3's index
    if is_postgres_url(target):
        from registry.index.postgres import PostgresIndex

        return await PostgresIndex.connect(target)
    from registry.index.sqlite import SqliteIndex

    return await SqliteIndex.connect(target)


def default_index_path(store: GitStore) -> Path:
    """The SQLite index file: ``.git/procreg/index.sqlite3`` (inside .git, never committed)."""
    return store.git_dir / INDEX_FILE


def index_target(store: GitStore, database_url: str | None = None) -> str | Path:
    """What :func:`open_backend` connects to: a PostgreSQL URL or the SQLite file path.

    ``database_url`` wins, then ``$PROCREG_DATABASE_URL``, then the SQLite file in
    ``.git``. ``sqlite:///abs/path`` names another SQLite file.
    """
    url = database_url or os.environ.get(DATABASE_URL_ENV) or None
    if url is None:
        return default_index_path(store)
    if is_postgres_url(url):
        return url
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite://") :])
    raise UsageError(
        f"database URL {url!r} is not postgresql://... or sqlite:///path; fix --database-url "
        f"or ${DATABASE_URL_ENV}"
    )


async def open_backend(
    store: GitStore, database_url: str | None = None, *, set_aside_corrupt: bool = False
) -> IndexBackend:
    """Connect the index for ``store`` (SQLite in ``.git`` unless a PostgreSQL URL is given).

    With ``set_aside_corrupt`` (what ``reindex`` asks for), a corrupt SQLite index
    file is moved aside and a new one is created, to be rebuilt from git; the run
    history is in its own file and is kept.
    """
    target = index_target(store, database_url)
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
    if not set_aside_corrupt or not isinstance(target, Path):
        return await connect_index(target)
    from registry.index.sqlite import set_aside_corrupt as move_aside

    try:
        return await connect_index(target)
    except IndexCorrupt as exc:
        aside = move_aside(target)
        log.warning("procreg: %s; moved it to %s and rebuilding it from git", exc, aside.name)
        return await connect_index(target)


class OfflineIndex:
    """Stands in for an index that could not be opened, for work that only records runs.

    Releasing, rolling back, promoting and testing examples need git and the sandbox,
    not the index: with this in its place every index call raises the error opening it
    raised, so the run records those commands make are spooled (delivered by a later
    command), as they were before the index was ever involved.
    """

    def __init__(self, error: IndexUnavailable, target: str | Path | None = None) -> None:
        self.error = error
        self.target = target
        """Where the index would be: the run records spooled meanwhile wait for it."""

    async def close(self) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        async def unavailable(*args: object, **kwargs: object) -> Any:
            raise self.error

        return unavailable
