"""The project's error hierarchy.

Every error the library raises on purpose derives from :class:`RegistryError`.
Exception *types* are API; messages are for people and say what to do next.
The CLI turns a ``RegistryError`` into one line on stderr and exit code 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from registry.core.problems import Problem


class RegistryError(Exception):
    """Base of every error the registry raises on purpose."""


class UsageError(RegistryError):
    """The caller asked for something malformed (a bad spec, argument or flag)."""


class ConfigError(RegistryError):
    """The registry config (``procreg.toml``) is unreadable or invalid."""


class GitError(RegistryError):
    """A git operation failed; the message names the repository and ref.

    ``path`` (a file or folder) and ``ref`` say where, when known.
    """

    def __init__(self, message: str, *, path: str | None = None, ref: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.ref = ref


class HistoryIncomplete(GitError):
    """This clone lacks the history or release tags a command needs (a shallow or tagless clone).

    ``shallow`` says the clone is shallow; ``remote`` names the remote whose release tags
    are not here and ``missing`` lists them. The message says what to fetch.
    """

    def __init__(
        self,
        message: str,
        *,
        shallow: bool = False,
        remote: str | None = None,
        missing: Sequence[str] = (),
    ) -> None:
        super().__init__(message, ref=remote)
        self.shallow = shallow
        self.remote = remote
        self.missing = list(missing)


class NotFoundError(RegistryError):
    """A procedure, version, ref or channel does not exist.

    ``kind`` says what was looked for (``"procedure"``, ``"version"``, ``"ref"``,
    ``"channel"``, ``"run"``...) and ``name`` what it was called, when known.
    """

    def __init__(self, message: str, *, kind: str | None = None, name: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name


class ConflictError(RegistryError):
    """A concurrent writer won a race (branch moved, tag already exists)."""


class LockedError(ConflictError):
    """A lock file is held by a live process (a git command, another procreg).

    ``path`` is the lock file; ``holders`` the ids of the processes seen holding it
    (empty when they could not be seen).
    """

    def __init__(self, message: str, *, path: str, holders: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.path = path
        self.holders = list(holders)


class ValidationFailed(RegistryError):
    """One or more procedures are invalid; nothing was stored.

    ``problems`` holds every problem found, each naming file, line and rule.
    """

    def __init__(self, problems: Sequence[Problem], message: str | None = None) -> None:
        self.problems = list(problems)
        if message is None:
            first = self.problems[0].format() if self.problems else "invalid procedure"
            more = len(self.problems) - 1
            message = first + (f" (and {more} more problem{'s' * (more > 1)})" if more > 0 else "")
        super().__init__(message)


class IndexUnavailable(RegistryError):
    """The SQL index cannot be reached or is in an unexpected state."""


class IndexNotSynced(IndexUnavailable):
    """The index was never synced for ``ref`` (a fresh clone): ``procreg sync`` fills it."""

    def __init__(self, message: str, ref: str) -> None:
        super().__init__(message)
        self.ref = ref


class IndexRejected(IndexUnavailable):
    """The index refused a write (a constraint failed); the transaction was rolled back."""


class IndexCorrupt(IndexUnavailable):
    """The derived index file is not a readable SQLite database; ``procreg reindex`` rebuilds it."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class ExecutionError(RegistryError):
    """A run could not be started (not a failure of the procedure itself)."""


class EnvironmentBuildError(ExecutionError):
    """A procedure's locked environment could not be built (or locked) with uv.

    ``requirement`` names the distribution uv could not get (or the first
    locked one when uv's message names none); ``detail`` is uv's own message.
    Nothing half-built is left in the cache.
    """

    def __init__(self, message: str, *, requirement: str | None, detail: str = "") -> None:
        super().__init__(message)
        self.requirement = requirement
        self.detail = detail


class LockError(RegistryError):
    """A ``pylock.toml`` is unreadable, or a procedure's requirements cannot be locked."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ExamplesFailed(RegistryError):
    """A version's examples do not hold; ``report`` (an ``ExamplesReport``) says which and how."""

    def __init__(self, report: Any, message: str) -> None:
        super().__init__(message)
        self.report = report


class MigrationError(RegistryError):
    """A legacy source cannot be read or migrated."""


class PermissionDenied(RegistryError):
    """The caller's token lacks a right; ``right`` names it."""

    def __init__(self, message: str, right: str) -> None:
        super().__init__(message)
        self.right = right


class QueueUnavailable(RegistryError):
    """Queued runs need a PostgreSQL index (the embedded SQLite one holds no job queue)."""


class JobError(RegistryError):
    """A queued job ended without a run result (cancelled, or no worker could run it).

    ``job_id`` names the job and ``state`` its final state, when known.
    """

    def __init__(self, message: str, *, job_id: int | None = None, state: str | None = None):
        super().__init__(message)
        self.job_id = job_id
        self.state = state


class RegistryTimeout(RegistryError, TimeoutError):
    """A :class:`Registry` call did not finish within its timeout; it was cancelled."""
