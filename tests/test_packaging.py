"""The wheel is the whole product: installed alone (as pipx or uv tool would), procreg works."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_a_wheel_installed_in_a_clean_environment_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # Build from a copy of the tracked files: setuptools' build/ folder in a checkout keeps
    # files of older layouts, which would end up in the wheel.
    source = tmp_path / "source"
    for name in filter(None, _run("git", "-C", ROOT, "ls-files", "-z").split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    # --no-build-isolation: the build uses this environment's setuptools (no network).
    wheel_args = ["wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)]
    _run(sys.executable, "-m", "pip", *wheel_args, source)
    (wheel,) = dist.glob("procedure_registry-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "registry/py.typed" in names
    assert "registry/sandbox/supervisor.py" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
    assert "registry/api/__init__.py" in names and "registry/api.py" not in names
    assert "registry/data/json-schema/release.schema.json" in names
    # the web view's templates and stylesheet ship in the wheel (no CDN, no build step)
    assert "registry/serve/web/templates/procedure.html" in names
    assert "registry/serve/web/static/web.css" in names

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    # The dependencies come from this environment (a .pth line), procreg only from the wheel.
    purelib = _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip()
    Path(purelib, "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PROCREG_PYTHON")}
    where = _run(python, "-c", "import registry; print(registry.__file__)", cwd=tmp_path, env=env)
    assert where.strip().startswith(purelib)
    assert "procreg, version" in _run(venv / "bin" / "procreg", "--version", cwd=tmp_path, env=env)
    repo = tmp_path / "reg"
    _run(venv / "bin" / "procreg", "init", repo, cwd=tmp_path, env=env)
    _run(venv / "bin" / "procreg", "new", "greet", cwd=repo, env=env)
    assert "1 procedure" in _run(venv / "bin" / "procreg", "check", cwd=repo, env=env)
    assert '"$schema"' in _run(venv / "bin" / "procreg", "schema", cwd=repo, env=env)
