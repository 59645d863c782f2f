"""Procedure environments: a ``pylock.toml`` installed by uv, once per (lock, Python), cached.

An environment is a folder of installed distributions (``uv pip install
--target``) for the sandbox's interpreter, keyed by the sha256 of the lock's
text and that interpreter's version. It lives in the cache
(``$PROCREG_CACHE_DIR``, else ``[envs] cache_dir``, else ``~/.cache/procreg``;
as root, when the home folder is closed to other users, ``/var/cache/procreg``
so that the sandbox uids can read it) under ``envs/<key>/``:

- built in a temporary folder beside it, then renamed into place, so a reader
  sees a whole environment or none, and a failed build leaves nothing;
- one build per key at a time: a ``flock`` on ``envs/.<key>.lock``, so
  concurrent first runs, in any number of processes, build it once;
- read-only to the sandbox uids (directories 0755, files 0644), bind-mounted
  read-only into each sandbox that runs it (:mod:`registry.sandbox.engine`);
- ``env.json`` says what it holds; its modification time is the last use, so
  :meth:`EnvCache.prune` removes the least recently used first.

Building is the only step that may reach a package index; a run never does.
uv is the ``uv`` distribution's binary (:func:`uv_binary`); nothing here
resolves or installs by hand.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from registry.config import EnvsSection
from registry.errors import EnvironmentBuildError, LockError

log = logging.getLogger("registry.sandbox")

ENVS_DIR = "envs"
READY_FILE = "env.json"
SITE_DIR = "site"
LOCK_NAME = "pylock.toml"
UV_TIMEOUT_S = 600.0
SYSTEM_CACHE = Path("/var/cache/procreg")


class Environment(BaseModel):
    """One built environment in the cache (what ``procreg envs list`` shows)."""

    key: str
    lock_hash: str
    python: str
    python_version: str
    path: str
    """The folder put on the procedure's ``sys.path`` (and bind-mounted read-only)."""
    distributions: dict[str, str] = Field(default_factory=dict)
    """Installed distribution name -> version."""
    modules: dict[str, list[str]] = Field(default_factory=dict)
    """Installed distribution name -> its top-level modules (from its ``RECORD``)."""
    built_at: float
    build_ms: float
    last_used: float = 0.0
    size_bytes: int = 0


@dataclass(frozen=True)
class IndexSource:
    """Where uv finds distributions when it resolves a lock (``[envs]`` and ``procreg lock``)."""

    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    @classmethod
    def of(cls, config: EnvsSection | None) -> IndexSource:
        config = config or EnvsSection()
        return cls(config.index_url, tuple(config.find_links), config.no_index)

    def args(self) -> list[str]:
        out: list[str] = []
        if self.index_url:
            out += ["--index-url", self.index_url]
        for link in self.find_links:
            out += ["--find-links", link]
        if self.no_index:
            out.append("--no-index")
        return out


def uv_binary() -> str | None:
    """The uv program of the ``uv`` distribution (or on ``PATH``), or None."""
    try:
        import uv

        found: str | None = uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
    return found


def uv_version() -> str | None:
    """``uv --version``, or None when uv cannot be run."""
    binary = uv_binary()
    if binary is None:
        return None
    try:
        done = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


_VERSIONS: dict[str, str] = {}


def python_version(python: str) -> str:
    """``X.Y.Z`` of the interpreter ``python`` (asked once per process)."""
    known = _VERSIONS.get(python)
    if known is not None:
        return known
    if Path(python).resolve() == Path(sys.executable).resolve():
        version = "{}.{}.{}".format(*sys.version_info[:3])
    else:
        code = "import sys;print('%d.%d.%d'%sys.version_info[:3])"
        done = subprocess.run(
            [python, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=30, check=True
        )
        version = done.stdout.strip()
    _VERSIONS[python] = version
    return version


def _open_to_others(path: Path) -> bool:
    try:
        return all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents) if p.exists())
    except OSError:
        return False


def cache_root(config: EnvsSection | None = None) -> Path:
    """The cache folder: ``$PROCREG_CACHE_DIR``, ``[envs] cache_dir``, or the user's cache."""
    named = os.environ.get("PROCREG_CACHE_DIR") or (config.cache_dir if config else None)
    if named:
        return Path(named).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME")
    home = Path(xdg) if xdg else Path.home() / ".cache"
    if os.geteuid() == 0 and not _open_to_others(home):
        return SYSTEM_CACHE  # the sandbox uids could not reach a root-only home
    return home / "procreg"


def env_key(lock_hash: str, version: str) -> str:
    """The cache key of (lock, Python version)."""
    import hashlib

    return hashlib.sha256(f"{lock_hash}\0{version}".encode()).hexdigest()[:32]


def installed_modules(site: Path) -> dict[str, list[str]]:
    """Distribution name -> top-level modules, from the ``RECORD`` of each ``*.dist-info``.

    A top-level module is a package folder or a ``.py`` / extension file at the
    top of the install folder; ``__pycache__``, ``*.dist-info`` and ``*.data``
    do not count.
    """
    found: dict[str, list[str]] = {}
    for info in sorted(site.glob("*.dist-info")):
        name, _version = _dist_name(info)
        if name is None:
            continue
        record = info / "RECORD"
        tops: set[str] = set()
        if record.is_file():
            for line in record.read_text("utf-8", "replace").splitlines():
                path = line.rsplit(",", 2)[0].strip('"')
                first, _, rest = path.partition("/")
                if not first or first.endswith((".dist-info", ".data")) or first == "__pycache__":
                    continue
                if rest:
                    if first.isidentifier():
                        tops.add(first)
                elif first.endswith(".py") and first[:-3].isidentifier():
                    tops.add(first[:-3])
                elif first.endswith(".so") and first.split(".", 1)[0].isidentifier():
                    tops.add(first.split(".", 1)[0])
        found[name] = sorted(tops)
    return found


def installed_versions(site: Path) -> dict[str, str]:
    """Distribution name -> version installed in ``site``."""
    out: dict[str, str] = {}
    for info in sorted(site.glob("*.dist-info")):
        name, version = _dist_name(info)
        if name is not None and version is not None:
            out[name] = version
    return out


def _dist_name(info: Path) -> tuple[str | None, str | None]:
    meta = info / "METADATA"
    name = version = None
    if meta.is_file():
        for line in meta.read_text("utf-8", "replace").splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            if key.lower() == "name":
                name = value.strip()
            elif key.lower() == "version":
                version = value.strip()
    return name, version


def _run_uv(args: list[str], what: str, names: Sequence[str]) -> None:
    binary = uv_binary()
    if binary is None:
        raise EnvironmentBuildError(
            f"cannot {what}: uv is not installed (pip install uv)", requirement=None
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    env["UV_NO_PROGRESS"] = "1"
    try:
        done = subprocess.run(
            [binary, *args],
            capture_output=True,
            text=True,
            timeout=UV_TIMEOUT_S,
            check=False,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentBuildError(f"cannot {what}: {exc}", requirement=None) from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        culprit = _culprit(said, names)
        short = said.splitlines()[-1] if said else f"uv exited with {done.returncode}"
        which = f" ({culprit})" if culprit else ""
        raise EnvironmentBuildError(
            f"cannot {what}{which}: {short}", requirement=culprit, detail=said
        )


def _culprit(said: str, names: Sequence[str]) -> str | None:
    """The first distribution uv's message names (uv says ``name==version`` or ``name @``)."""
    hits = []
    for name in names:
        pattern = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", re.IGNORECASE)
        match = pattern.search(said)
        if match is not None:
            hits.append((match.start(), name))
    if hits:
        return min(hits)[1]
    return names[0] if names else None


def _lock_names(lock_text: str) -> list[str]:
    import tomllib

    try:
        data = tomllib.loads(lock_text)
    except tomllib.TOMLDecodeError:
        return []
    packages = data.get("packages", [])
    return [str(p.get("name")) for p in packages if isinstance(p, dict) and p.get("name")]


def install_lock(lock_text: str, python: str, target: Path, uv_cache: Path) -> None:
    """Install exactly what ``lock_text`` pins, checked against its hashes, into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    lock_file = target.parent / LOCK_NAME
    lock_file.write_text(lock_text, encoding="utf-8")
    names = _lock_names(lock_text)
    args = ["pip", "install", "--preview-features", "pylock", "--quiet", "--target", str(target)]
    args += ["--python", python, "-r", str(lock_file), "--require-hashes", "--no-deps"]
    args += ["--compile-bytecode", "--link-mode", "copy", "--cache-dir", str(uv_cache)]
    what = "build the environment for " + (", ".join(names) or "the lock")
    _run_uv(args, what, names)
    with contextlib.suppress(OSError):
        (target / ".lock").unlink()  # uv's own lock of the target folder


def resolve_lock(
    requirements: Sequence[str], python: str, source: IndexSource, uv_cache: Path
) -> str:
    """A ``pylock.toml`` for ``requirements`` on ``python``, resolved by uv, with procreg's table.

    The lock is installed once into a temporary folder to read each locked
    distribution's top-level modules from its ``RECORD`` (what validation then
    allows to import). Raises :class:`LockError` when uv cannot resolve.
    """
    from registry.core.pylock import tool_table

    names = [re.split(r"[\s\[<>=!~;@(]", r.strip(), maxsplit=1)[0] for r in requirements]
    with tempfile.TemporaryDirectory(prefix="procreg-lock-") as tmp:
        folder = Path(tmp)
        wanted = folder / "requirements.in"
        wanted.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        out = folder / LOCK_NAME
        args = ["pip", "compile", str(wanted), "--format", "pylock.toml", "--quiet"]
        args += ["--python", python, "--output-file", str(out), "--no-header"]
        args += ["--cache-dir", str(uv_cache), *source.args()]
        try:
            _run_uv(args, "lock " + ", ".join(requirements), names)
        except EnvironmentBuildError as exc:
            raise LockError(str(exc)) from None
        text = out.read_text(encoding="utf-8")
        site = folder / "inspect" / SITE_DIR
        install_lock(text, python, site, uv_cache)
        modules = installed_modules(site)
    return text.rstrip("\n") + "\n" + tool_table(requirements, modules)


@dataclass
class EnvCache:
    """The environments under ``root/envs``; thread- and process-safe."""

    root: Path
    hits: int = 0
    builds: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def default(cls, config: EnvsSection | None = None) -> EnvCache:
        """The cache this process uses for ``config`` (one object per folder)."""
        root = cache_root(config)
        with _CACHES_LOCK:
            cache = _CACHES.get(root)
            if cache is None:
                cache = _CACHES[root] = cls(root)
            return cache

    @property
    def envs(self) -> Path:
        return self.root / ENVS_DIR

    @property
    def uv_cache(self) -> Path:
        return self.root / "uv"

    def ensure(self, lock_text: str, python: str) -> tuple[Environment, bool]:
        """The environment for ``lock_text`` on ``python``, built first if needed.

        True as the second value when this call built it. Raises
        :class:`EnvironmentBuildError` (nothing left in the cache) when uv fails.
        """
        from registry.core.pylock import lock_hash

        digest = lock_hash(lock_text)
        key = env_key(digest, python_version(python))
        folder = self.envs / key
        found = self._ready(folder)
        if found is not None:
            with self._lock:
                self.hits += 1
            return found, False
        self._prepare()
        with self._key_lock(key):
            found = self._ready(folder)  # another process built it while we waited
            if found is not None:
                with self._lock:
                    self.hits += 1
                return found, False
            env = self._build(key, digest, lock_text, python)
        with self._lock:
            self.builds += 1
        return env, True

    def _prepare(self) -> None:
        self.envs.mkdir(parents=True, exist_ok=True)
        for folder in (self.root, self.envs):
            with contextlib.suppress(OSError):
                folder.chmod(0o755)
        if os.geteuid() == 0 and not _open_to_others(self.envs):
            raise EnvironmentBuildError(
                f"the environment cache {self.envs} is not reachable by the sandbox's users "
                "(a parent folder is closed to others); set PROCREG_CACHE_DIR or [envs] "
                "cache_dir to a folder they can reach",
                requirement=None,
            )

    @contextlib.contextmanager
    def _key_lock(self, key: str):  # type: ignore[no-untyped-def]
        fd = os.open(self.envs / f".{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _ready(self, folder: Path) -> Environment | None:
        ready = folder / READY_FILE
        try:
            text = ready.read_text(encoding="utf-8")
        except OSError:
            return None
        with contextlib.suppress(OSError):
            os.utime(ready)  # the last use, for prune
        try:
            return Environment.model_validate_json(text)
        except ValueError:
            return None

    def _build(self, key: str, digest: str, lock_text: str, python: str) -> Environment:
        t0 = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.build-", dir=self.envs))
        try:
            install_lock(lock_text, python, tmp / SITE_DIR, self.uv_cache)
            site = self.envs / key / SITE_DIR
            env = Environment(
                key=key,
                lock_hash=digest,
                python=python,
                python_version=python_version(python),
                path=str(site),
                distributions=installed_versions(tmp / SITE_DIR),
                modules=installed_modules(tmp / SITE_DIR),
                built_at=time.time(),
                build_ms=(time.perf_counter() - t0) * 1000,
            )
            (tmp / READY_FILE).write_text(env.model_dump_json(indent=2) + "\n", encoding="utf-8")
            _read_only_to_others(tmp)
            tmp.rename(self.envs / key)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("built environment %s in %.0f ms", key, env.build_ms)
        return env

    def entries(self) -> list[Environment]:
        """Every built environment, least recently used first."""
        found = []
        if not self.envs.is_dir():
            return []
        for folder in self.envs.iterdir():
            ready = folder / READY_FILE
            if folder.name.startswith(".") or not ready.is_file():
                continue
            try:
                env = Environment.model_validate_json(ready.read_text(encoding="utf-8"))
                used = ready.stat().st_mtime
            except (OSError, ValueError):
                continue
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            found.append(env.model_copy(update={"last_used": used, "size_bytes": size}))
        return sorted(found, key=lambda e: e.last_used)

    def prune(self, *, keep: int = 0, unused_for_s: float | None = None) -> list[Environment]:
        """Remove environments, least recently used first, keeping the ``keep`` most recent.

        With ``unused_for_s``, only those not used for that long go. Half-built
        leftovers of a killed build go too. An environment is removed under
        its build lock, renamed away first, so no run sees half of one.
        """
        envs = self.entries()
        doomed = envs[: max(0, len(envs) - keep)]
        if unused_for_s is not None:
            now = time.time()
            doomed = [e for e in doomed if now - e.last_used >= unused_for_s]
        for env in doomed:
            with self._key_lock(env.key):
                gone = self.envs / f".{env.key}.removing-{os.getpid()}"
                with contextlib.suppress(OSError):
                    (self.envs / env.key).rename(gone)
                shutil.rmtree(gone, ignore_errors=True)
        if self.envs.is_dir():
            for leftover in self.envs.glob(".*.build-*"):
                key = leftover.name[1:].split(".build-", 1)[0]
                with self._key_lock(key):
                    shutil.rmtree(leftover, ignore_errors=True)
        return doomed


_CACHES: dict[Path, EnvCache] = {}
_CACHES_LOCK = threading.Lock()


def _read_only_to_others(top: Path) -> None:
    """Directories 0755, files 0644 (0755 if executable): readable, never writable, by others."""
    for folder, dirs, files in os.walk(top):
        os.chmod(folder, 0o755)  # noqa: PTH101, S103  (readable by the sandbox uids, by design)
        for name in files:
            path = os.path.join(folder, name)  # noqa: PTH118
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                os.chmod(path, 0o755 if mode & stat.S_IXUSR else 0o644)  # noqa: PTH101
        del dirs
