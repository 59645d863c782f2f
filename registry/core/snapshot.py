"""A procedure's files as read from git or disk: the unit every pure module takes.

Reading is the git store's job; validation, versioning and execution work on
a :class:`Snapshot` and never touch git or the file system themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

MODE_FILE = 0o100644
MODE_EXECUTABLE = 0o100755
MODE_SYMLINK = 0o120000
MODE_TREE = 0o040000
MODE_SUBMODULE = 0o160000

PROCEDURES_DIR = "procedures"
MAIN_FILE = "main.py"
METADATA_FILE = "metadata.json"


class FileEntry(NamedTuple):
    """One file of a procedure: its bytes and git file mode."""

    data: bytes
    mode: int = MODE_FILE


@dataclass(frozen=True)
class Snapshot:
    """The files of ``procedures/<id>/`` at one commit (or in the working tree).

    ``files`` maps paths relative to the procedure folder (``main.py``,
    ``helpers/text.py``) to their contents. ``tree_id`` and ``commit`` are the
    git object ids the snapshot was read from (``None`` for the working tree).
    """

    id: str
    files: dict[str, FileEntry] = field(default_factory=dict)
    tree_id: str | None = None
    commit: str | None = None
    folder: str = PROCEDURES_DIR

    @property
    def path(self) -> str:
        """The folder's path relative to the repository root."""
        return f"{self.folder}/{self.id}"

    def text(self, name: str) -> str | None:
        """A file decoded as UTF-8, or ``None`` if absent or not UTF-8."""
        entry = self.files.get(name)
        return utf8_text(entry.data) if entry is not None else None


def utf8_text(data: bytes | None) -> str | None:
    """``data`` decoded as UTF-8, or ``None`` if absent or not UTF-8."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
