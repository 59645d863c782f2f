"""A deterministic synthetic registry repo for benchmarks: N procedures, T release tags, C commits.

Built with one ``git fast-import`` stream (a packfile with deltas, written in
seconds; pygit2 loose objects would rewrite the 10,000-entry ``procedures/``
tree 2,000 times as separate files) and then ``git pack-refs --all``. Tag
messages carry the same trailers the registry writes, including ``Tree:``,
whose ids are computed here the way git hashes trees.

Layout: commit ``k`` creates procedures ``[k*N/C, (k+1)*N/C)`` and releases
each as 1.0.0; the remaining ``T - N`` releases modify a random existing
procedure at a random later commit (patch or minor bump). Every procedure
passes :func:`registry.core.validation.validate_snapshot`.

Usage: ``python benchmarks/synthetic.py PATH [--procedures N --tags T --commits C --seed S]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from registry.core.model import Example, Metadata, Parameter, Returns  # noqa: E402

WORDS = [
    "csv",
    "json",
    "parse",
    "report",
    "invoice",
    "customer",
    "order",
    "shipment",
    "ledger",
    "audit",
    "backup",
    "restore",
    "normalize",
    "slug",
    "text",
    "email",
    "phone",
    "address",
    "geocode",
    "currency",
    "convert",
    "tax",
    "discount",
    "price",
    "inventory",
    "stock",
    "reorder",
    "forecast",
    "schedule",
    "cron",
    "retry",
    "queue",
    "notify",
    "webhook",
    "export",
    "import",
    "archive",
    "compress",
    "checksum",
    "hash",
    "validate",
    "sanitize",
    "redact",
    "mask",
    "token",
    "rotate",
    "secret",
    "dedupe",
    "merge",
    "split",
    "join",
    "filter",
    "sort",
    "rank",
    "score",
    "cluster",
    "sample",
    "summarize",
    "translate",
]
CATEGORIES = ("data", "finance", "ops", "text", "integration", "security", "reporting")
BASE_TIME = 1_700_000_000


@dataclass
class Spec:
    """The size of the synthetic repo."""

    procedures: int = 10_000
    tags: int = 30_000
    commits: int = 2_000
    seed: int = 42
    # "procreg": procedure-<id>-vX.Y.Z release tags; "gto": the peer tool's <id>@vX.Y.Z
    flavor: str = "procreg"

    def key(self) -> str:
        """A cache key: the same key always builds the same repo."""
        return f"{self.flavor}-n{self.procedures}-t{self.tags}-c{self.commits}-s{self.seed}"


@dataclass
class Built:
    """What was generated: the repo and facts the benchmarks use."""

    path: Path
    spec: Spec
    ids: list[str] = field(default_factory=list)
    words: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0


def proc_id(i: int) -> str:
    """The id of synthetic procedure ``i``."""
    return f"p{i:05d}"


def main_py(pid: str, revision: int, words: list[str]) -> bytes:
    """A valid entry point whose body changes with ``revision``."""
    doc = " ".join(words)
    return (
        f'"""{pid}: {doc}."""\n\n'
        f"REVISION = {revision}\n\n\n"
        "def main(text: str) -> str:\n"
        f'    """Apply {doc} to the text (revision {revision})."""\n'
        "    return text\n"
    ).encode()


def metadata_json(pid: str, words: list[str], category: str) -> bytes:
    """The metadata of a synthetic procedure (valid against the model)."""
    meta = Metadata(
        id=pid,
        name=f"{words[0].title()} {words[1]} {pid}",
        description=f"Synthetic procedure that does {' '.join(words)}.",
        category=category,
        tags=sorted(set(words[:3])),
        parameters=[Parameter(name="text", type="string", description="The input text.")],
        returns=Returns(type="string", description="The text."),
        examples=[Example(description="echo", input={"text": "hi"}, output="hi")],
    )
    return meta.to_json().encode()


def _git_hash(kind: str, data: bytes) -> bytes:
    return hashlib.sha1(f"{kind} {len(data)}\0".encode() + data, usedforsecurity=False).digest()


def tree_id(files: dict[str, bytes]) -> str:
    """The git tree id of a flat folder of regular files (as git would hash it)."""
    body = b"".join(
        b"100644 " + name.encode() + b"\0" + _git_hash("blob", data)
        for name, data in sorted(files.items())
    )
    return _git_hash("tree", body).hex()


def tag_name(flavor: str, pid: str, version: str) -> str:
    """The release tag of ``pid`` at ``version`` in the given flavor."""
    if flavor == "gto":
        return f"{pid}@v{version}"
    return f"procedure-{pid}-v{version}"


def release_message(pid: str, version: str, previous: str | None, tree: str, bump: str) -> str:
    """A release tag message with the registry's trailers."""
    lines = [
        f"Release {pid} {version}",
        "",
        f"Bump: {bump}",
        "Breaking: false",
        "Lines-Added: 2",
        "Lines-Removed: 2" if previous else "Lines-Removed: 0",
        "Files-Changed: 1" if previous else "Files-Changed: 2",
        f"Previous: {previous or 'none'}",
        f"Tree: {tree}",
        "Reason: synthetic change" if previous else "Reason: first release",
    ]
    return "\n".join(lines) + "\n"


def _data(payload: bytes) -> bytes:
    return b"data %d\n" % len(payload) + payload + b"\n"


def _plan(spec: Spec, rng: random.Random) -> dict[int, list[int]]:
    """commit -> procedures modified there (each pair once), ``T - N`` pairs in all."""
    n, c = spec.procedures, spec.commits
    created = [i * c // n for i in range(n)]
    wanted = max(0, spec.tags - n)
    pairs: set[tuple[int, int]] = set()
    attempts = 0
    while len(pairs) < wanted and attempts < wanted * 20:
        attempts += 1
        p = rng.randrange(n)
        if created[p] + 1 >= c:
            continue
        pairs.add((rng.randrange(created[p] + 1, c), p))
    plan: dict[int, list[int]] = {}
    for commit, p in sorted(pairs):
        plan.setdefault(commit, []).append(p)
    return plan


def _stream(spec: Spec, built: Built) -> Iterator[bytes]:
    rng = random.Random(spec.seed)
    n, c = spec.procedures, spec.commits
    plan = _plan(spec, rng)
    versions: dict[int, tuple[int, int, int]] = {}
    revisions: dict[int, int] = {}
    for i in range(n):
        pid = proc_id(i)
        built.ids.append(pid)
        built.words[pid] = rng.sample(WORDS, 4)
    categories = {i: CATEGORIES[i % len(CATEGORIES)] for i in range(n)}
    for k in range(c):
        when = BASE_TIME + k * 60
        new = range(k * n // c, (k + 1) * n // c)
        changed = plan.get(k, [])
        out = [
            b"commit refs/heads/main\n",
            b"mark :%d\n" % (k + 1),
            b"author Bench <bench@example.com> %d +0000\n" % when,
            b"committer Bench <bench@example.com> %d +0000\n" % when,
            _data(f"feat: synthetic commit {k}".encode()),
        ]
        if k:
            out.append(b"from :%d\n" % k)
        tags: list[tuple[str, str]] = []
        for i in [*new, *changed]:
            pid = proc_id(i)
            revisions[i] = revisions.get(i, -1) + 1
            main = main_py(pid, revisions[i], built.words[pid])
            meta = metadata_json(pid, built.words[pid], categories[i])
            out.append(f"M 100644 inline procedures/{pid}/main.py\n".encode() + _data(main))
            if revisions[i] == 0:
                out.append(f"M 100644 inline procedures/{pid}/metadata.json\n".encode())
                out.append(_data(meta))
            tree = tree_id({"main.py": main, "metadata.json": meta})
            prev = versions.get(i)
            if prev is None:
                version, bump = (1, 0, 0), "initial"
            elif rng.random() < 0.3:
                version, bump = (prev[0], prev[1] + 1, 0), "minor"
            else:
                version, bump = (prev[0], prev[1], prev[2] + 1), "patch"
            versions[i] = version
            text = "{}.{}.{}".format(*version)
            previous = None if prev is None else "{}.{}.{}".format(*prev)
            tags.append(
                (tag_name(spec.flavor, pid, text), release_message(pid, text, previous, tree, bump))
            )
        yield b"".join(out) + b"\n"
        for name, message in tags:
            yield (
                f"tag {name}\nfrom :{k + 1}\n".encode()
                + b"tagger Bench <bench@example.com> %d +0000\n" % when
                + _data(message.encode())
            )
    yield b"done\n"


def build(path: Path, spec: Spec | None = None, *, checkout: bool = False) -> Built:
    """Create the synthetic repo at ``path`` (which must not exist or be empty).

    Without ``checkout`` the working tree stays empty: the registry reads git
    objects, and 20,000 files would only slow the benchmark's set-up.
    """
    spec = spec or Spec()
    started = time.perf_counter()
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for key, value in (("user.name", "Bench"), ("user.email", "bench@example.com")):
        subprocess.run(["git", "-C", str(path), "config", key, value], check=True)
    built = Built(path, spec)
    proc = subprocess.Popen(
        ["git", "-C", str(path), "fast-import", "--quiet", "--done"],
        stdin=subprocess.PIPE,
    )
    assert proc.stdin is not None
    for chunk in _stream(spec, built):
        proc.stdin.write(chunk)
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("git fast-import failed")
    subprocess.run(["git", "-C", str(path), "pack-refs", "--all"], check=True)
    if checkout:
        subprocess.run(["git", "-C", str(path), "reset", "-q", "--hard", "main"], check=True)
    built.seconds = time.perf_counter() - started
    return built


def main() -> None:
    """Command line: build a synthetic repo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", type=Path)
    parser.add_argument("--procedures", type=int, default=Spec.procedures)
    parser.add_argument("--tags", type=int, default=Spec.tags)
    parser.add_argument("--commits", type=int, default=Spec.commits)
    parser.add_argument("--seed", type=int, default=Spec.seed)
    args = parser.parse_args()
    spec = Spec(args.procedures, args.tags, args.commits, args.seed)
    built = build(args.path, spec)
    print(json.dumps({"path": str(built.path), "seconds": round(built.seconds, 2)}))


if __name__ == "__main__":
    main()
