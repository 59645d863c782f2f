"""docs/ci.md's commands, run as written against a real bare remote.

A pull-request clone posts the markdown, a shallow clone is stopped with the fetch hint,
and the merge to main releases and pushes the tags.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from registry.core.model import Example, Parameter
from tests.helpers import REPO_ROOT, TEXT_PARAMETER, git, run_cli, write_proc

CI_DOC = REPO_ROOT / "docs" / "ci.md"
FETCH = "git fetch origin main --tags"
CHECK = "procreg check --base origin/main --format markdown > procreg.md || status=$?"
RELEASE = "procreg release --push"


def doc_commands() -> list[str]:
    """The shell lines of the doc's YAML blocks that run procreg or fetch for it."""
    found = []
    for block in re.findall(r"```yaml\n(.*?)```", CI_DOC.read_text(), re.S):
        for line in block.splitlines():
            text = re.sub(r"^\s*(- )?(run: )?", "", line).strip()
            if text.startswith(("procreg ", "git fetch ")):
                found.append(text)
    return found


def test_both_ci_examples_run_the_same_commands() -> None:
    commands = doc_commands()
    for command in (FETCH, CHECK, RELEASE):
        assert commands.count(command) == 2, (command, commands)  # GitHub and GitLab


def _shell(cwd: Path, command: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run a doc line as CI would: `sh`, with procreg on PATH, and its `status` kept."""
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        (bin_dir / "procreg").symlink_to(Path(sys.executable).with_name("procreg"))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    script = f"status=0\n{command}\nexit $status\n"
    return subprocess.run(
        ["sh", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


@pytest.fixture
def server(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A bare remote with the pre-receive hook whose main holds ``greet`` 1.0.0 (tag pushed)."""
    write_proc(repo, "greet", examples=[Example(input={"text": "hi"}, output="hi")])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "feat: greet")
    assert run_cli(capsys, "-C", str(repo), "release").code == 0
    bare = tmp_path / "server.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    # The server enforces releases: the pushes below go through procreg's own check.
    assert run_cli(capsys, "-C", str(bare), "hooks", "install", "--server").code == 0
    return bare


def test_the_ci_commands_work_as_written(server: Path, tmp_path: Path) -> None:
    # A pull request: a branch that adds an optional parameter to greet (a minor bump).
    pr = tmp_path / "pr"
    git(tmp_path, "clone", "-q", f"file://{server}", str(pr))
    git(pr, "switch", "-q", "-c", "feature")
    optional = Parameter(name="loud", type="boolean", required=False, default=False)
    write_proc(
        pr,
        "greet",
        "return text.upper() if loud else text",
        [TEXT_PARAMETER, optional],
        signature="text: str, loud: bool = False",
    )
    git(pr, "commit", "-qam", "feat: greet can shout")
    assert _shell(pr, FETCH, tmp_path).returncode == 0
    checked = _shell(pr, CHECK, tmp_path)
    assert checked.returncode == 0, checked.stderr
    comment = (pr / "procreg.md").read_text()
    assert "| `greet` | 1.0.0 | **1.1.0** | minor |" in comment
    assert "parameter 'loud' is new and optional (default False)" in comment, comment
    assert "checked" not in comment  # the table and the problems only: no summary line

    # The same job in a shallow clone stops and says what to fetch.
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{server}", str(shallow))
    stopped = _shell(shallow, CHECK, tmp_path)
    assert stopped.returncode == 1
    assert "git fetch --unshallow --tags" in stopped.stderr
    assert len(stopped.stderr.strip().splitlines()) == 1

    # The merge to main, then the release job in a fresh clone of main.
    git(pr, "push", "-q", "origin", "feature:main")
    main = tmp_path / "main"
    git(tmp_path, "clone", "-q", f"file://{server}", str(main))
    released = _shell(main, RELEASE, tmp_path)
    assert released.returncode == 0, released.stderr
    assert "tagged procedure-greet-v1.1.0" in released.stdout
    assert "pushed 1 ref to origin" in released.stdout
    assert git(server, "tag", "-l", "procedure-greet-*").split() == [
        "procedure-greet-v1.0.0",
        "procedure-greet-v1.1.0",
    ]


def test_a_problem_fails_the_check_and_is_in_the_comment(server: Path, tmp_path: Path) -> None:
    pr = tmp_path / "pr"
    git(tmp_path, "clone", "-q", f"file://{server}", str(pr))
    git(pr, "switch", "-q", "-c", "broken")
    (pr / "procedures/greet/main.py").write_text(
        "def main(text: str) -> str:\n    return eval(text)\n"
    )
    git(pr, "commit", "-qam", "fix: oops")
    checked = _shell(pr, CHECK, tmp_path)
    assert checked.returncode == 1
    comment = (pr / "procreg.md").read_text()
    assert "#### Validation problems" in comment
    assert "`procedures/greet/main.py:2`" in comment
    assert "checked" not in comment
