"""The bump decision: a table of (old folder, new folder, commits) -> (bump, reason)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import semver

from registry.core.conventional import parse_conventional
from registry.core.reasons import ReasonKind
from registry.core.snapshot import MODE_EXECUTABLE, FileEntry, Snapshot
from registry.core.typecompat import accepts
from registry.core.versioning import DiffStats, decide_bump, next_version

STATS = DiffStats(lines_added=3, lines_removed=1, files_changed=1)


def src(
    params: str = "text: str, limit: int = 10",
    returns: str | None = "list[str]",
    body: str = "return text.split()[:limit]",
    doc: str = "Split text into words.",
    prefix: str = "",
    name: str = "main",
    kw: str = "def",
) -> str:
    arrow = f" -> {returns}" if returns is not None else ""
    return f'{prefix}{kw} {name}({params}){arrow}:\n    """{doc}"""\n    {body}\n'


BASE_META: dict[str, Any] = {
    "id": "split",
    "name": "Split",
    "description": "Split text into words.",
    "tags": ["text"],
    "parameters": [
        {"name": "text", "type": "string", "description": "The text."},
        {"name": "limit", "type": "integer", "required": False, "default": 10},
    ],
    "returns": {"type": "array", "fields": {}},
    "examples": [{"description": "two words", "input": {"text": "a b"}, "output": ["a", "b"]}],
}


def meta(**changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(BASE_META))
    data.update(changes)
    return data


def param(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields}


def snapshot(
    main: str | None = None,
    metadata: dict[str, Any] | str | None = None,
    extra: dict[str, bytes] | None = None,
) -> Snapshot:
    """A procedure folder in memory (``None`` main/metadata: the base ones)."""
    files: dict[str, FileEntry] = {}
    files["main.py"] = FileEntry((main if main is not None else src()).encode())
    if metadata is None:
        metadata = BASE_META
    text = metadata if isinstance(metadata, str) else json.dumps(metadata, indent=2)
    files["metadata.json"] = FileEntry(text.encode())
    for name, data in (extra or {}).items():
        files[name] = FileEntry(data)
    return Snapshot(id="split", files=files)


def case(
    name: str,
    bump: str,
    reason: str,
    *,
    old: str | None = None,
    new: str | None = None,
    old_meta: dict[str, Any] | str | None = None,
    new_meta: dict[str, Any] | str | None = None,
    messages: tuple[str, ...] = (),
    new_extra: dict[str, bytes] | None = None,
) -> Any:
    return pytest.param(
        snapshot(old, old_meta),
        snapshot(new, new_meta, new_extra),
        messages,
        bump,
        reason,
        id=name,
    )


KWARGS = "text: str, limit: int = 10, **options"

TABLE = [
    # --- none ---------------------------------------------------------------
    case("identical", "none", "", messages=()),
    case("identical-with-feat-commit", "none", "", messages=("feat: add limit",)),
    # --- major: the entry point -----------------------------------------------
    case("entry-point-removed", "major", "entry point 'main' was removed",
         new=src(name="run")),
    case("entry-point-async", "major", "is now async", new=src(kw="async def")),
    case("main-does-not-parse", "major", "main.py does not parse",
         new="def main(text:\n"),
    # --- major: parameters ----------------------------------------------------
    case("param-removed", "major", "parameter 'limit' was removed",
         new=src("text: str", body="return text.split()")),
    case("param-renamed", "major", "parameter 'limit' was renamed to 'count'",
         new=src("text: str, count: int = 10")),
    case("param-removed-kwargs-new", "minor", "but **options still accepts it (not breaking)",
         new=src("text: str, **options")),
    case("param-removed-kwargs-kept", "patch", "'limit' was removed, but **options still accepts",
         old=src(KWARGS), new=src("text: str, **options")),
    case("param-renamed-kwargs-kept", "minor", "renamed to 'count', but **options still",
         old=src(KWARGS), new=src("text: str, count: int = 10, **options")),
    case("kwargs-dropped", "major", "**options was dropped", old=src(KWARGS)),
    case("param-made-required", "major", "parameter 'limit' is now required",
         new=src("text: str, limit: int")),
    case("new-required-param", "major", "parameter 'sep' is new and required",
         new=src("text: str, sep: str, limit: int = 10")),
    case("new-required-despite-kwargs", "major", "parameter 'sep' is new and required",
         old=src(KWARGS), new=src("text: str, sep: str, limit: int = 10, **options")),
    case("now-positional-only", "major", "positional-only",
         new=src("text: str, /, limit: int = 10")),
    # --- major: annotations ---------------------------------------------------
    case("union-narrowed", "major", "narrowed from int | str to int",
         old=src("text: str, limit: int | str = 10")),
    case("float-to-int", "major", "narrowed from float to int",
         old=src("text: str, limit: float = 10")),
    case("str-to-int", "major", "annotation of 'text' changed from str to int",
         new=src("text: int, limit: int = 10")),
    case("optional-to-plain", "major", "narrowed from Optional[int] to int",
         old=src("text: str, limit: Optional[int] = 10", prefix="from typing import Optional\n")),
    case("union-subscript-narrowed", "major", "narrowed from Union[int, str] to int",
         old=src("text: str, limit: Union[int, str] = 10", prefix="from typing import Union\n")),
    case("unrelated-type", "major", "changed from Path to PurePath",
         old=src("text: Path, limit: int = 10"), new=src("text: PurePath, limit: int = 10")),
    case("annotation-added", "major", "narrowed from no annotation to int",
         old=src("text: str, limit=10")),
    case("return-widened", "major", "return annotation changed from list[str] to list[str] | None",
         new=src(returns="list[str] | None")),
    case("return-removed", "major", "return annotation changed from list[str] to no annotation",
         new=src(returns=None)),
    case("default-changed", "major", "default of 'sep' changed from ',' to ';'",
         old=src("text: str, sep: str = ','"), new=src("text: str, sep: str = ';'")),
    # --- major: metadata and commits -----------------------------------------
    case("metadata-type-changed", "major", "type of parameter 'text' in metadata.json changed",
         new_meta=meta(parameters=[param("text", type="integer"), BASE_META["parameters"][1]])),
    case("metadata-required-on", "major", "parameter 'limit' is now required in metadata.json",
         new_meta=meta(parameters=[BASE_META["parameters"][0], param("limit", type="integer")])),
    case("metadata-default-changed", "major", "default of 'limit' in metadata.json changed",
         new_meta=meta(parameters=[BASE_META["parameters"][0],
                                   param("limit", type="integer", required=False, default=5)])),
    case("output-field-removed", "major", "output field 'count' was removed",
         old_meta=meta(returns={"type": "object", "fields": {"count": "how many"}}),
         new_meta=meta(returns={"type": "object", "fields": {}})),
    case("bang-commit", "major", 'commit "feat(api)!: drop mode" is marked breaking',
         new=src(body="return text.split()"), messages=("feat(api)!: drop mode",)),
    case("breaking-footer-comment-only", "major",
         'commit "docs: note" has a BREAKING CHANGE footer: limit counts bytes now',
         new="# words\n" + src(),
         messages=("docs: note\n\nBREAKING CHANGE: limit counts bytes now",)),
    case("breaking-dash-footer", "major", "BREAKING CHANGE footer: mode is gone",
         new=src(body="return text.split()"),
         messages=("refactor: tidy\n\nbody text\n\nBREAKING-CHANGE: mode is gone",)),
    case("breaking-wins-over-feat", "major", "parameter 'limit' was renamed to 'sep'",
         new=src("text: str, sep: str = ' '"), messages=("feat: add sep",)),
    # --- minor ----------------------------------------------------------------
    case("new-optional-param", "minor", "parameter 'sep' is new and optional (default ' ')",
         new=src("text: str, limit: int = 10, sep: str = ' '")),
    case("new-kwargs", "minor", "**options is new", new=src(KWARGS)),
    case("required-made-optional", "minor", "parameter 'text' is now optional (default '')",
         new=src("text: str = '', limit: int = 10")),
    case("widened-union", "minor", "widened from int to int | str",
         new=src("text: str, limit: int | str = 10")),
    case("widened-int-float", "minor", "widened from int to float",
         new=src("text: str, limit: float = 10")),
    case("widened-optional", "minor", "widened from str to str | None",
         new=src("text: str | None, limit: int = 10")),
    case("widened-bool-int", "minor", "widened from bool to int",
         old=src("text: str, limit: bool = 10")),
    case("annotation-removed", "minor", "widened from int to no annotation",
         new=src("text: str, limit=10")),
    case("annotation-to-any", "minor", "widened from int to Any",
         new=src("text: str, limit: Any = 10", prefix="from typing import Any\n")),
    case("new-example", "minor", "new example in metadata.json: 'empty text'",
         new_meta=meta(examples=[*BASE_META["examples"],
                                 {"description": "empty text", "input": {"text": ""},
                                  "output": []}])),
    case("new-output-field", "minor", "new output field 'count'",
         new_meta=meta(returns={"type": "array", "fields": {"count": "how many"}})),
    case("feat-commit-body-change", "minor", 'commit "feat: add limit" adds a feature',
         new=src(body="return text.split(maxsplit=limit)"),
         messages=("feat: add limit\n\nLonger explanation.",)),
    case("metadata-type-widened", "minor", "widened from integer to number",
         new_meta=meta(parameters=[BASE_META["parameters"][0],
                                   param("limit", type="number", required=False, default=10)])),
    case("metadata-required-off", "minor", "'text' is no longer required in metadata.json",
         new_meta=meta(parameters=[param("text", required=False), BASE_META["parameters"][1]])),
    case("old-main-unparsable", "minor", "entry point 'main' is new",
         old="def main(:\n"),
    # --- patch ----------------------------------------------------------------
    case("body-change", "patch", "body of main.py changed",
         new=src(body="return text.split(None)[:limit]")),
    case("helper-added", "patch", "body of main.py changed",
         new=src(prefix="def _clean(s: str) -> str:\n    return s.strip()\n\n\n")),
    case("comment-only", "patch", "comments or formatting of main.py changed",
         new="# Splits words.\n" + src()),
    case("docstring-only", "patch", "docstring of 'main' changed", new=src(doc="Words.")),
    case("same-type-rewritten", "patch", "rewritten from Optional[int] to int | None (same type)",
         old=src("text: str, limit: Optional[int] = 10", prefix="from typing import Optional\n"),
         new=src("text: str, limit: int | None = 10", prefix="from typing import Optional\n")),
    case("typing-alias-same", "patch", "return annotation rewritten from List[str] to list[str]",
         old=src(returns="List[str]"), new=src(returns="list[str]")),
    case("return-narrowed", "patch", "return annotation narrowed from list[str] | None to list",
         old=src(returns="list[str] | None")),
    case("return-added", "patch", "return annotation list[str] added (a narrowing)",
         old=src(returns=None)),
    case("keyword-only", "patch", "'limit' is now keyword-only",
         new=src("text: str, *, limit: int = 10")),
    case("description-changed", "patch",
         'description in metadata.json changed from "Split text into words." to "Split."',
         new_meta=meta(description="Split.")),
    case("tags-changed", "patch", "tags in metadata.json changed",
         new_meta=meta(tags=["text", "words"])),
    case("status-deprecated", "patch", 'status in metadata.json changed from "active"',
         new_meta=meta(status="deprecated")),
    case("param-description", "patch", "description of parameter 'text' in metadata.json",
         new_meta=meta(parameters=[param("text", description="Any text."),
                                   BASE_META["parameters"][1]])),
    case("example-removed", "patch", "example removed from metadata.json: 'two words'",
         new_meta=meta(examples=[])),
    case("return-type-narrowed-meta", "patch", "return type in metadata.json narrowed",
         old_meta=meta(returns={"type": "any"})),
    case("helper-file-added", "patch", "file 'helpers.py' added",
         new_extra={"helpers.py": b"X = 1\n"}),
    case("fix-commit", "patch", 'commit "fix: trailing space" is a fix',
         new=src(body="return text.strip().split()[:limit]"),
         messages=("fix: trailing space",)),
    case("chore-and-merge-commits", "patch", "body of main.py changed",
         new=src(body="return list(text.split())[:limit]"),
         messages=("chore: bump", "Merge pull request #3 from a/b\n\nfeat: thing")),
    case("old-metadata-unparsable", "patch", "previous release's could not be read",
         old_meta="{not json"),
    case("new-metadata-unparsable", "patch", "could not be read as metadata",
         new_meta='{"id": "split"}'),
    case("metadata-reformatted", "patch", "formatting of metadata.json changed",
         new_meta=json.dumps(BASE_META)),
    case("entry-point-renamed-in-metadata", "patch", "entry point in metadata.json changed",
         new=src(name="run"), new_meta=meta(entry_point="run")),
    # --- network: widening is a feature a reviewer must see, narrowing a patch ----------
    case("network-granted", "minor", "network access widened: metadata.json now allows "
         "api.example.com:443", new_meta=meta(network={"allow": ["api.example.com:443"]})),
    case("network-widened", "minor", "network access widened: metadata.json now allows "
         "[::1]:8080", old_meta=meta(network={"allow": ["API.example.com:443"]}),
         new_meta=meta(network={"allow": ["api.example.com:443", "[::1]:8080"]})),
    case("network-narrowed", "patch", "network access narrowed: metadata.json no longer "
         "allows 127.0.0.1:8080",
         old_meta=meta(network={"allow": ["api.example.com:443", "127.0.0.1:8080"]}),
         new_meta=meta(network={"allow": ["api.example.com:443"]})),
    case("network-removed", "patch", "no longer allows api.example.com:443",
         old_meta=meta(network={"allow": ["api.example.com:443"]})),
    case("network-same-targets-respelled", "patch", "formatting of metadata.json changed",
         old_meta=meta(network={"allow": ["API.Example.com:443"]}),
         new_meta=meta(network={"allow": ["api.example.com:443"]})),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "messages", "bump", "reason"), TABLE)
def test_bump_table(
    old: Snapshot, new: Snapshot, messages: tuple[str, ...], bump: str, reason: str
) -> None:
    decision = decide_bump(old, new, STATS, messages)
    assert decision.bump == bump, decision.reasons
    assert decision.breaking == (bump == "major")
    if bump == "none":
        assert decision.reasons == []
    else:
        assert any(reason in r for r in decision.reasons), decision.reasons


def test_table_is_large_enough() -> None:
    assert len(TABLE) >= 45


def test_first_release() -> None:
    decision = decide_bump(None, snapshot(), STATS, ["feat!: whatever"])
    assert (decision.bump, decision.breaking, decision.reasons) == (
        "initial",
        False,
        ["first release"],
    )
    assert decision.kinds == [ReasonKind.FIRST_RELEASE]


def test_same_tree_id_is_none() -> None:
    old = Snapshot(id="split", files={"main.py": FileEntry(b"x")}, tree_id="a" * 40)
    new = Snapshot(id="split", files={"main.py": FileEntry(b"y")}, tree_id="a" * 40)
    assert decide_bump(old, new, STATS, ["fix: x"]).bump == "none"


def test_every_reason_is_kept_most_severe_first() -> None:
    old = snapshot()
    new = snapshot(
        src("text: str, sep: str = ' '", body="return text.split(sep)"),
        meta(description="Split by a separator."),
    )
    decision = decide_bump(old, new, STATS, ["feat: add sep"])
    assert decision.bump == "major"
    assert decision.reasons[0] == "parameter 'limit' was renamed to 'sep'"
    for expected in (
        "parameter 'sep' is new and optional (default ' ')",
        'commit "feat: add sep" adds a feature (feat)',
        "body of main.py changed",
        "description in metadata.json changed",
    ):
        assert any(expected in r for r in decision.reasons), decision.reasons
    levels = ["major" if "renamed" in r else "other" for r in decision.reasons]
    assert levels == sorted(levels, key=lambda lvl: lvl != "major")
    assert decision.kinds[0] is ReasonKind.PARAMETER_RENAMED
    assert {
        ReasonKind.PARAMETER_ADDED_OPTIONAL,
        ReasonKind.COMMIT_FEATURE,
        ReasonKind.BODY_CHANGED,
        ReasonKind.METADATA_FIELD_CHANGED,
    } <= set(decision.kinds)


def test_entry_point_rename_is_explained_once() -> None:
    new = snapshot(src(name="run"), meta(entry_point="run"))
    decision = decide_bump(snapshot(), new, STATS, [])
    assert decision.reasons == ["entry point in metadata.json changed from 'main' to 'run'"]
    assert decision.kinds == [ReasonKind.METADATA_ENTRY_POINT]


def test_main_removed_and_mode_change() -> None:
    old = snapshot()
    gone = Snapshot(id="split", files={"metadata.json": old.files["metadata.json"]})
    decision = decide_bump(old, gone, STATS, [])
    assert decision.bump == "major"
    assert "main.py was removed" in decision.reasons[0]
    assert decision.kinds[0] is ReasonKind.MAIN_REMOVED
    chmod = Snapshot(
        id="split",
        files={**old.files, "main.py": FileEntry(old.files["main.py"].data, MODE_EXECUTABLE)},
    )
    decision = decide_bump(old, chmod, STATS, [])
    assert (decision.bump, decision.reasons) == ("patch", ["file mode of main.py changed"])
    assert decision.kinds == [ReasonKind.MAIN_MODE_CHANGED]


def test_garbage_never_crashes() -> None:
    old = Snapshot(
        id="x", files={"main.py": FileEntry(b"\xff\xfe"), "metadata.json": FileEntry(b"[")}
    )
    new = Snapshot(
        id="x", files={"main.py": FileEntry(b"\x00"), "metadata.json": FileEntry(b"\xff")}
    )
    decision = decide_bump(old, new, STATS, ["", "\n\n", "BREAKING CHANGE:"])
    assert decision.bump == "major"
    assert decision.reasons


@pytest.mark.parametrize(
    ("wide", "narrow", "expected"),
    [
        ("int | str", "int", True),
        ("int", "int | str", False),
        ("Optional[int]", "None", True),
        ("Union[int, None]", "int | None", True),
        ("typing.Optional[int]", "Optional[int]", True),
        ("complex", "bool", True),
        ("int", "float", False),
        ("'int | None'", "int", True),
        ("Annotated[int, 'doc']", "int", True),
        (None, "str", True),
        ("str", None, False),
        ("Any", "dict[str, int]", True),
        ("dict[str, int]", "Dict[str, int]", True),
        ("Path", "PurePath", False),
    ],
)
def test_accepts(wide: str | None, narrow: str | None, expected: bool) -> None:
    assert accepts(wide, narrow) is expected


V = semver.Version.parse


@pytest.mark.parametrize(
    ("previous", "bump", "expected"),
    [
        (None, "initial", "1.0.0"),
        (None, "minor", "1.0.0"),
        ("1.2.3", "major", "2.0.0"),
        ("1.2.3", "minor", "1.3.0"),
        ("1.2.3", "patch", "1.2.4"),
        ("1.2.3+build.5", "patch", "1.2.4"),
        ("0.3.1", "major", "0.4.0"),
        ("0.3.1", "minor", "0.3.2"),
        ("0.3.1", "patch", "0.3.2"),
        ("0.0.1", "major", "0.1.0"),
        ("1.2.0-rc.1", "patch", "1.2.0"),
        ("1.2.0-rc.1", "minor", "1.2.0"),
        ("1.2.0-rc.1", "major", "2.0.0"),
        ("1.2.3-rc.1", "minor", "1.3.0"),
        ("1.2.3-rc.1", "patch", "1.2.3"),
        ("2.0.0-rc.1", "major", "2.0.0"),
        ("2.0.0-rc.1", "minor", "2.0.0"),
        ("0.4.0-beta", "major", "0.4.0"),
    ],
)
def test_next_version(previous: str | None, bump: str, expected: str) -> None:
    prev = V(previous) if previous is not None else None
    assert str(next_version(prev, bump)) == expected  # type: ignore[arg-type]


def test_next_version_refuses_none_and_late_initial() -> None:
    with pytest.raises(ValueError, match="nothing changed"):
        next_version(V("1.0.0"), "none")
    with pytest.raises(ValueError, match="first release"):
        next_version(V("1.0.0"), "initial")


@pytest.mark.parametrize(
    ("message", "type_", "scope", "breaking", "description"),
    [
        ("feat: add limit", "feat", None, False, "add limit"),
        ("feat(text)!: drop mode", "feat", "text", True, "drop mode"),
        ("Fix(parser): handle tabs\n\nbody", "fix", "parser", False, "handle tabs"),
        ("fix!: x", "fix", None, True, "x"),
        ("refactor: tidy\n\nBREAKING CHANGE: mode is gone", "refactor", None, True, "tidy"),
        ("chore: x\n\nBREAKING-CHANGE: y", "chore", None, True, "x"),
        ("Merge branch 'feature' into main", "merge", None, False,
         "Merge branch 'feature' into main"),
        ("Merge pull request #12 from a/feat\n\nfeat!: new thing", "merge", None, False,
         "Merge pull request #12 from a/feat"),
        ("Merge branch 'x'\n\nBREAKING CHANGE: removed y", "merge", None, True,
         "Merge branch 'x'"),
        ('Revert "feat: add limit"\n\nThis reverts commit abc.', "revert", None, False,
         'Revert "feat: add limit"'),
        ("Update README", None, None, False, "Update README"),
        ("feat:no space", None, None, False, "feat:no space"),
        ("fixup! feat: x", None, None, False, "fixup! feat: x"),
        ("\n\n  docs: leading blank lines", "docs", None, False, "leading blank lines"),
        ("", None, None, False, ""),
        ("wip\n\nmentions BREAKING CHANGE: in prose", None, None, False, "wip"),
    ],
)  # fmt: skip
def test_parse_conventional(
    message: str, type_: str | None, scope: str | None, breaking: bool, description: str
) -> None:
    commit = parse_conventional(message)
    assert (commit.type, commit.scope, commit.breaking, commit.description) == (
        type_,
        scope,
        breaking,
        description,
    )


def test_breaking_note_on_next_line() -> None:
    commit = parse_conventional("feat: x\n\nBREAKING CHANGE:\n  the mode parameter is gone")
    assert commit.breaking
    assert commit.breaking_note == "the mode parameter is gone"


# --- signature changes as reason kinds ----------------------------------------

R = ReasonKind


def sig_case(source: str, old: str, new: str, bump: str, kinds: list[ReasonKind]) -> Any:
    return pytest.param(old, new, bump, kinds, id=f"{source}: {old} -> {new}")


GRIFFE = "griffe tests/test_diff.py"  # mkdocstrings/griffe, test_diff_griffe, commit b450abb
OURS = "procreg issue 14"

# Each case: (source, old signature, new signature, bump, reason kinds, most severe first).
# griffe judges positional callers; the registry calls with keywords, so several of
# griffe's breakages are not breaking here, and the reason says so.
SIGNATURE_TABLE = [
    sig_case(GRIFFE, "", "x", "major", [R.PARAMETER_ADDED_REQUIRED]),
    sig_case(GRIFFE, "x=0", "x=1", "major", [R.PARAMETER_CHANGED_DEFAULT]),
    sig_case(GRIFFE, "x, /", "*, x", "minor", [R.PARAMETER_NO_LONGER_POSITIONAL_ONLY]),
    sig_case(GRIFFE, "*, x", "x, /", "major", [R.PARAMETER_NOW_POSITIONAL_ONLY]),
    sig_case(GRIFFE, "x", "x, /", "major", [R.PARAMETER_NOW_POSITIONAL_ONLY]),
    sig_case(GRIFFE, "x", "*, x", "patch", [R.PARAMETER_NOW_KEYWORD_ONLY]),
    sig_case(GRIFFE, "x, /", "*x", "patch", [R.POSITIONAL_ONLY_CHANGED, R.VAR_POSITIONAL_ADDED]),
    sig_case(GRIFFE, "x", "*x", "major", [R.PARAMETER_NOW_VAR_POSITIONAL, R.VAR_POSITIONAL_ADDED]),
    sig_case(GRIFFE, "*, x", "*x", "major",
             [R.PARAMETER_NOW_VAR_POSITIONAL, R.VAR_POSITIONAL_ADDED]),
    sig_case(GRIFFE, "**x", "*x", "major", [R.VAR_KEYWORD_REMOVED, R.VAR_POSITIONAL_ADDED]),
    sig_case(GRIFFE, "x", "*x, **y", "minor",
             [R.VAR_KEYWORD_ADDED, R.PARAMETER_REMOVED_KWARGS_ACCEPT, R.VAR_POSITIONAL_ADDED]),
    sig_case(GRIFFE, "*, x", "*x, **y", "minor",
             [R.VAR_KEYWORD_ADDED, R.PARAMETER_REMOVED_KWARGS_ACCEPT, R.VAR_POSITIONAL_ADDED]),
    sig_case(GRIFFE, "x, /", "**x", "minor", [R.VAR_KEYWORD_ADDED, R.POSITIONAL_ONLY_CHANGED]),
    sig_case(GRIFFE, "x", "**x", "minor",
             [R.VAR_KEYWORD_ADDED, R.PARAMETER_REMOVED_KWARGS_ACCEPT]),
    sig_case(GRIFFE, "*, x", "**x", "minor",
             [R.VAR_KEYWORD_ADDED, R.PARAMETER_REMOVED_KWARGS_ACCEPT]),
    sig_case(GRIFFE, "*x", "**x", "minor", [R.VAR_KEYWORD_ADDED, R.VAR_POSITIONAL_REMOVED]),
    sig_case(GRIFFE, "x, /", "*y, **x", "minor",
             [R.VAR_KEYWORD_ADDED, R.POSITIONAL_ONLY_CHANGED, R.VAR_POSITIONAL_ADDED]),
    sig_case(GRIFFE, "x", "*y, **x", "minor",
             [R.VAR_KEYWORD_ADDED, R.PARAMETER_REMOVED_KWARGS_ACCEPT, R.VAR_POSITIONAL_ADDED]),
    sig_case(GRIFFE, "x=1", "x", "major", [R.PARAMETER_NOW_REQUIRED]),
    sig_case(GRIFFE, "x, y", "y, x", "patch", [R.PARAMETERS_REORDERED]),
    sig_case(GRIFFE, "x, y", "x", "major", [R.PARAMETER_REMOVED]),
    # The list: every signature change has its own reason.
    sig_case(OURS, "*, x, y", "*, y, x", "patch", [R.KEYWORD_ONLY_REORDERED]),
    sig_case(OURS, "x, y, *, a, b", "y, x, *, b, a", "patch",
             [R.PARAMETERS_REORDERED, R.KEYWORD_ONLY_REORDERED]),
    sig_case(OURS, "x", "x, *args", "patch", [R.VAR_POSITIONAL_ADDED]),
    sig_case(OURS, "x, *args", "x", "patch", [R.VAR_POSITIONAL_REMOVED]),
    sig_case(OURS, "x, *args: int", "x, *rest: str", "patch", [R.VAR_POSITIONAL_CHANGED]),
    sig_case(OURS, "x", "x, **kw", "minor", [R.VAR_KEYWORD_ADDED]),
    sig_case(OURS, "x, **kw", "x", "major", [R.VAR_KEYWORD_REMOVED]),
    sig_case(OURS, "x, **kw", "x, **extra", "patch", [R.VAR_KEYWORD_RENAMED]),
    sig_case(OURS, "x, *, y", "x, y", "patch", [R.PARAMETER_NO_LONGER_KEYWORD_ONLY]),
    sig_case(OURS, "a=1, /, *, x", "a=2, /, *, x", "patch", [R.POSITIONAL_ONLY_CHANGED]),
    sig_case(OURS, "a=1, /, *, x", "*, x", "patch", [R.POSITIONAL_ONLY_CHANGED]),
    sig_case(OURS, "*, x", "b=1, /, *, x", "patch", [R.POSITIONAL_ONLY_CHANGED]),
    sig_case(OURS, "*, x", "a, /, *, x", "major", [R.POSITIONAL_ONLY_ADDED_REQUIRED]),
    sig_case(OURS, "x, y=1", "y=1, *, x", "patch",
             [R.PARAMETER_NOW_KEYWORD_ONLY]),
    sig_case(OURS, "x: int", "x: 'int'", "patch", [R.ANNOTATION_REWRITTEN]),
    sig_case(OURS, "x:int", "x: int", "patch", [R.FORMATTING_CHANGED]),
]  # fmt: skip


@pytest.mark.parametrize(("old", "new", "bump", "kinds"), SIGNATURE_TABLE)
def test_signature_reason_kinds(old: str, new: str, bump: str, kinds: list[ReasonKind]) -> None:
    before = Snapshot(id="x", files={"main.py": FileEntry(f"def main({old}): ...\n".encode())})
    after = Snapshot(id="x", files={"main.py": FileEntry(f"def main({new}): ...\n".encode())})
    decision = decide_bump(before, after, STATS, [])
    assert decision.kinds == kinds, decision.reasons
    assert decision.bump == bump
    assert decision.reasons == [d.words for d in decision.details]
    if any(k is not R.FORMATTING_CHANGED for k in kinds):
        assert not any("comments or formatting" in r for r in decision.reasons)


@pytest.mark.parametrize(
    ("old", "new", "kind", "words"),
    [
        ("x, y", "y, x", R.PARAMETERS_REORDERED,
         "parameters reordered from (x, y) to (y, x); callers use keywords, "
         "so not breaking"),
        ("*, x, y", "*, y, x", R.KEYWORD_ONLY_REORDERED,
         "keyword-only parameters reordered from (x, y) to (y, x); "
         "callers use keywords, so not breaking"),
        ("x", "x, *args", R.VAR_POSITIONAL_ADDED,
         "*args was added; callers use keywords, so not breaking"),
        ("x, *args", "x", R.VAR_POSITIONAL_REMOVED,
         "*args was removed; callers use keywords, so not breaking"),
        ("x", "x, **kw", R.VAR_KEYWORD_ADDED,
         "**kw is new: extra keyword arguments are accepted"),
        ("x, **kw", "x", R.VAR_KEYWORD_REMOVED,
         "**kw was dropped: extra keyword arguments are refused"),
        ("a=1, /, *, x", "*, x", R.POSITIONAL_ONLY_CHANGED,
         "positional-only parameters changed from (a=1) to (); "
         "callers use keywords, so they never pass them: not breaking"),
    ],
)  # fmt: skip
def test_signature_reason_words(old: str, new: str, kind: ReasonKind, words: str) -> None:
    before = Snapshot(id="x", files={"main.py": FileEntry(f"def main({old}): ...\n".encode())})
    after = Snapshot(id="x", files={"main.py": FileEntry(f"def main({new}): ...\n".encode())})
    decision = decide_bump(before, after, STATS, [])
    assert words in decision.reasons
    assert any(d.kind is kind and d.words == words for d in decision.details), decision.kinds


def test_every_reason_kind_has_words_and_a_level() -> None:
    from registry.core.reasons import _TEMPLATES

    assert set(_TEMPLATES) == set(ReasonKind)
    for kind, (level, words) in _TEMPLATES.items():
        assert level in ("major", "minor", "patch", "initial"), kind
        assert words.strip(), kind


def test_signature_table_is_large_enough() -> None:
    assert len(SIGNATURE_TABLE) >= 30


# --- conventional commits: parser cases from the anchors ----------------------

PSR = "python-semantic-release tests/unit/semantic_release/commit_parser/test_conventional.py"
CZ = "commitizen tests/test_bump_find_increment.py"
SPEC = "conventionalcommits.org 1.0.0"


def cc(source: str, message: str, type_: str | None, scope: str | None, breaking: bool) -> Any:
    return pytest.param(message, type_, scope, breaking, id=f"{source}: {message[:40]!r}")


COMMIT_TABLE = [
    # python-semantic-release (commit c74aa3b), test_parser_return_scope_from_commit_message
    cc(PSR, "chore(parser): ...", "chore", "parser", False),
    cc(PSR, "chore(a part): ...", "chore", "a part", False),
    cc(PSR, "chore(a_part): ...", "chore", "a_part", False),
    cc(PSR, "chore(a-part): ...", "chore", "a-part", False),
    cc(PSR, "chore(a.part): ...", "chore", "a.part", False),
    cc(PSR, "chore(a+part): ...", "chore", "a+part", False),
    cc(PSR, "chore(a&part): ...", "chore", "a&part", False),
    cc(PSR, "chore((part)): ...", "chore", "(part)", False),
    cc(PSR, "chore((p):rt): ...", "chore", "(p):rt", False),
    # test_parser_returns_correct_bump_level
    cc(PSR, "feat(parsers): add new parser pattern\n\nBREAKING CHANGE: change", "feat",
       "parsers", True),
    cc(PSR, "feat(parsers)!: add new parser pattern", "feat", "parsers", True),
    cc(PSR, "feat(parsers): add new parser pattern\n\nNew pattern is awesome\n\n"
            "BREAKING CHANGE: change \n", "feat", "parsers", True),
    cc(PSR, "feat(parsers): add new parser pattern\n\nBREAKING-CHANGE: change !", "feat",
       "parsers", True),
    cc(PSR, "feat(parser): add emoji parser", "feat", "parser", False),
    cc(PSR, "fix(parser): fix regex in conventional parser", "fix", "parser", False),
    cc(PSR, "test(parser): add a test for conventional parser", "test", "parser", False),
    cc(PSR, "fix!: edit data parsing stuff again", "fix", None, True),
    # commitizen (commit b66582e), test_find_increment's message lists
    cc(CZ, "perf: app is much faster", "perf", None, False),
    cc(CZ, "chore!: drop support for Python 3.9", "chore", None, True),
    cc(CZ, "chore(deps)!: drop support for Python 3.9", "chore", "deps", True),
    cc(CZ, "feat(pipeline)!: some text with breaking change", "feat", "pipeline", True),
    cc(CZ, "BREAKING CHANGE: `extends` key in config file is now used", None, None, True),
    cc(CZ, "BREAKING-CHANGE: `extends` key in config file is now used", None, None, True),
    cc(CZ, "performance. Remove or disable the reimplemented linters", None, None, False),
    cc(CZ, "refactor that how this line starts", None, None, False),
    # conventionalcommits.org 1.0.0: types are case-insensitive, BREAKING CHANGE is not.
    cc(SPEC, "FEAT: upper-case type", "feat", None, False),
    cc(SPEC, "Feat(API)!: mixed case", "feat", "API", True),
    cc(SPEC, "feat: x\n\nbreaking change: lower-case is not the token", "feat", None, False),
    cc(SPEC, "feat: x\n\nBreaking-Change: neither is mixed case", "feat", None, False),
    cc(SPEC, "feat(api(v2)): nested scope", "feat", "api(v2)", False),
    cc(SPEC, "feat(api(v2))!: nested scope, breaking", "feat", "api(v2)", True),
]  # fmt: skip


@pytest.mark.parametrize(("message", "type_", "scope", "breaking"), COMMIT_TABLE)
def test_conventional_commit_table(
    message: str, type_: str | None, scope: str | None, breaking: bool
) -> None:
    commit = parse_conventional(message)
    assert (commit.type, commit.scope, commit.breaking) == (type_, scope, breaking)


# Squash merges, in the three styles python-semantic-release parses
# (test_parser_squashed_commit_github_squash_style / _git_squash_style /
# _bitbucket_squash_style), abridged.
GITHUB_SQUASH = """fix(release-config): some commit subject (#10)

An additional description

Resolves: #12
Signed-off-by: author <author@not-an-email.com>

* feat: implemented searching gizmos by keyword

* docs(parser): add new parser pattern

* fix(cli)!: changed option name

BREAKING CHANGE: A breaking change description

Closes: #555

* invalid non-conventional formatted commit
"""

GIT_SQUASH = """Squashed commit of the following:

commit 63ec09b9e844e616dcaa7bae35a0b66671b59fbb
Author: author <author@not-an-email.com>
Date:   Sun Jan 19 12:05:23 2025 +0000

    fix(release-config): some commit subject

    An additional description

commit 1f34769bf8352131ad6f4879b8c47becf3c7aa69
Author: author <author@not-an-email.com>
Date:   Sat Jan 18 10:13:53 2025 +0000

    feat: implemented searching gizmos by keyword

commit 5f0292fb5a88c3a46e4a02bec35b85f5228e8e51
Author: author <author@not-an-email.com>
Date:   Sat Jan 18 10:13:53 2025 +0000

    fix(cli)!: changed option name

    BREAKING CHANGE: A breaking change description

    Closes: #555
"""

BITBUCKET_SQUASH = """Merged in feat/my-awesome-stuff  (pull request #10)

fix(release-config): some commit subject

An additional description

Resolves: #12
Signed-off-by: author <author@not-an-email.com>

feat: implemented searching gizmos by keyword

docs(parser): add new parser pattern

fix(cli)!: changed option name

BREAKING CHANGE: A breaking change description

Closes: #555

invalid non-conventional formatted commit
"""


@pytest.mark.parametrize(
    ("message", "top", "squashed"),
    [
        (GITHUB_SQUASH, ("fix", False),
         [("feat", None, False, None), ("docs", "parser", False, None),
          ("fix", "cli", True, "A breaking change description")]),
        (GIT_SQUASH, (None, False),
         [("fix", "release-config", False, None), ("feat", None, False, None),
          ("fix", "cli", True, "A breaking change description")]),
        (BITBUCKET_SQUASH, (None, False),
         [("fix", "release-config", False, None), ("feat", None, False, None),
          ("docs", "parser", False, None),
          ("fix", "cli", True, "A breaking change description")]),
        # procreg: dash bullets, and a breaking bullet in a plain commit's body.
        ("Add limit (#12)\n\n- feat(api): add limit\n- fix(text): trailing space\n",
         (None, False), [("feat", "api", False, None), ("fix", "text", False, None)]),
        ("Add limit (#12)\n\n* feat!: drop mode\n", (None, False), [("feat", None, True, None)]),
    ],
)  # fmt: skip
def test_squash_merge_bodies(
    message: str,
    top: tuple[str | None, bool],
    squashed: list[tuple[str, str | None, bool, str | None]],
) -> None:
    commit = parse_conventional(message)
    own_breaking = commit.bang or commit.breaking_note is not None
    assert (commit.type, own_breaking) == top
    assert [(c.type, c.scope, c.breaking, c.breaking_note) for c in commit.squashed] == squashed
    assert commit.breaking == (top[1] or any(s[2] for s in squashed))


@pytest.mark.parametrize(
    ("messages", "bump", "kinds"),
    [
        ((GITHUB_SQUASH,), "major",
         [R.SQUASHED_BREAKING_NOTE, R.SQUASHED_FEATURE, R.BODY_CHANGED, R.COMMIT_FIX]),
        (("Add limit (#12)\n\n* feat!: drop mode\n",), "major",
         [R.SQUASHED_BREAKING_BANG, R.BODY_CHANGED]),
        (("Add limit (#12)\n\n- feat(api): add limit\n- fix: tabs",), "minor",
         [R.SQUASHED_FEATURE, R.BODY_CHANGED, R.SQUASHED_FIX]),
        (("feat(api(v2)): add limit",), "minor", [R.COMMIT_FEATURE, R.BODY_CHANGED]),
        (("chore: x\n\nBREAKING-CHANGE: mode is gone",), "major",
         [R.COMMIT_BREAKING_NOTE, R.BODY_CHANGED]),
        (("chore: x\n\nbreaking change: mode is gone",), "patch", [R.BODY_CHANGED]),
        # A merge commit's body is not read: the merged commits are read on their own.
        (("Merge pull request #3 from a/b\n\n* feat!: thing",), "patch", [R.BODY_CHANGED]),
    ],
)  # fmt: skip
def test_commit_reason_kinds(messages: tuple[str, ...], bump: str, kinds: list[ReasonKind]) -> None:
    new = snapshot(src(body="return text.split(None)[:limit]"))
    decision = decide_bump(snapshot(), new, STATS, messages)
    assert (decision.bump, decision.kinds) == (bump, kinds), decision.reasons


# The reason kind each TABLE case must produce (the words above are derived from it).
TABLE_KINDS: dict[str, ReasonKind | None] = {
    "identical": None,
    "identical-with-feat-commit": None,
    "entry-point-removed": R.ENTRY_POINT_REMOVED,
    "entry-point-async": R.ENTRY_POINT_NOW_ASYNC,
    "main-does-not-parse": R.MAIN_UNPARSABLE,
    "param-removed": R.PARAMETER_REMOVED,
    "param-renamed": R.PARAMETER_RENAMED,
    "param-removed-kwargs-new": R.PARAMETER_REMOVED_KWARGS_ACCEPT,
    "param-removed-kwargs-kept": R.PARAMETER_REMOVED_KWARGS_ACCEPT,
    "param-renamed-kwargs-kept": R.PARAMETER_RENAMED_KWARGS_ACCEPT,
    "kwargs-dropped": R.VAR_KEYWORD_REMOVED,
    "param-made-required": R.PARAMETER_NOW_REQUIRED,
    "new-required-param": R.PARAMETER_ADDED_REQUIRED,
    "new-required-despite-kwargs": R.PARAMETER_ADDED_REQUIRED,
    "now-positional-only": R.PARAMETER_NOW_POSITIONAL_ONLY,
    "union-narrowed": R.ANNOTATION_NARROWED,
    "float-to-int": R.ANNOTATION_NARROWED,
    "str-to-int": R.ANNOTATION_CHANGED,
    "optional-to-plain": R.ANNOTATION_NARROWED,
    "union-subscript-narrowed": R.ANNOTATION_NARROWED,
    "unrelated-type": R.ANNOTATION_CHANGED,
    "annotation-added": R.ANNOTATION_NARROWED,
    "return-widened": R.RETURN_CHANGED,
    "return-removed": R.RETURN_CHANGED,
    "default-changed": R.PARAMETER_CHANGED_DEFAULT,
    "metadata-type-changed": R.METADATA_TYPE_CHANGED,
    "metadata-required-on": R.METADATA_NOW_REQUIRED,
    "metadata-default-changed": R.METADATA_DEFAULT_CHANGED,
    "output-field-removed": R.METADATA_OUTPUT_FIELD_REMOVED,
    "bang-commit": R.COMMIT_BREAKING_BANG,
    "breaking-footer-comment-only": R.COMMIT_BREAKING_NOTE,
    "breaking-dash-footer": R.COMMIT_BREAKING_NOTE,
    "breaking-wins-over-feat": R.PARAMETER_RENAMED,
    "new-optional-param": R.PARAMETER_ADDED_OPTIONAL,
    "new-kwargs": R.VAR_KEYWORD_ADDED,
    "required-made-optional": R.PARAMETER_NOW_OPTIONAL,
    "widened-union": R.ANNOTATION_WIDENED,
    "widened-int-float": R.ANNOTATION_WIDENED,
    "widened-optional": R.ANNOTATION_WIDENED,
    "widened-bool-int": R.ANNOTATION_WIDENED,
    "annotation-removed": R.ANNOTATION_WIDENED,
    "annotation-to-any": R.ANNOTATION_WIDENED,
    "new-example": R.METADATA_EXAMPLE_ADDED,
    "new-output-field": R.METADATA_OUTPUT_FIELD_ADDED,
    "feat-commit-body-change": R.COMMIT_FEATURE,
    "metadata-type-widened": R.METADATA_TYPE_WIDENED,
    "metadata-required-off": R.METADATA_NO_LONGER_REQUIRED,
    "old-main-unparsable": R.ENTRY_POINT_NEW,
    "body-change": R.BODY_CHANGED,
    "helper-added": R.BODY_CHANGED,
    "comment-only": R.FORMATTING_CHANGED,
    "docstring-only": R.DOCSTRING_CHANGED,
    "same-type-rewritten": R.ANNOTATION_REWRITTEN,
    "typing-alias-same": R.RETURN_REWRITTEN,
    "return-narrowed": R.RETURN_NARROWED,
    "return-added": R.RETURN_ADDED,
    "keyword-only": R.PARAMETER_NOW_KEYWORD_ONLY,
    "description-changed": R.METADATA_FIELD_CHANGED,
    "tags-changed": R.METADATA_FIELD_EDITED,
    "status-deprecated": R.METADATA_FIELD_CHANGED,
    "param-description": R.METADATA_PARAMETER_DESCRIPTION,
    "example-removed": R.METADATA_EXAMPLE_REMOVED,
    "return-type-narrowed-meta": R.METADATA_RETURN_NARROWED,
    "helper-file-added": R.FILE_ADDED,
    "fix-commit": R.COMMIT_FIX,
    "chore-and-merge-commits": R.BODY_CHANGED,
    "old-metadata-unparsable": R.METADATA_OLD_UNREADABLE,
    "new-metadata-unparsable": R.METADATA_UNREADABLE,
    "metadata-reformatted": R.METADATA_FORMATTING,
    "entry-point-renamed-in-metadata": R.METADATA_ENTRY_POINT,
    "network-granted": R.NETWORK_WIDENED,
    "network-widened": R.NETWORK_WIDENED,
    "network-narrowed": R.NETWORK_NARROWED,
    "network-removed": R.NETWORK_NARROWED,
    "network-same-targets-respelled": R.METADATA_FORMATTING,
}


@pytest.mark.parametrize(
    ("old", "new", "messages", "bump", "reason", "kind"),
    [pytest.param(*p.values, TABLE_KINDS[p.id], id=p.id) for p in TABLE],
)
def test_bump_table_kinds(
    old: Snapshot,
    new: Snapshot,
    messages: tuple[str, ...],
    bump: str,
    reason: str,
    kind: ReasonKind | None,
) -> None:
    decision = decide_bump(old, new, STATS, messages)
    if kind is None:
        assert decision.details == []
    else:
        assert kind in decision.kinds, decision.reasons
        assert any(d.kind is kind and reason in d.words for d in decision.details)
    assert [d.words for d in decision.details] == decision.reasons


def test_table_kinds_cover_the_table() -> None:
    assert set(TABLE_KINDS) == {p.id for p in TABLE}
