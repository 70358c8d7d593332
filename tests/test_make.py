"""The Makefile's virtualenv: made when missing, made again when unusable, kept when sound.

Run on a copy of the real Makefile over a tiny project with no dependencies, built by a backend of
its own (so that no package index is needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PYPROJECT = """\
[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]

[project]
name = "tiny"
version = "0"

[project.optional-dependencies]
dev = []
test = []
"""

# A PEP 517/660 backend writing a wheel of metadata only: nothing to fetch to build it.
BACKEND = """\
import base64
import hashlib
import zipfile

FILES = {
    "tiny-0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: tiny\\nVersion: 0\\n"
    "Provides-Extra: dev\\nProvides-Extra: test\\n",
    "tiny-0.dist-info/WHEEL": "Wheel-Version: 1.0\\nGenerator: tiny\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
}


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "tiny-0-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(f"{wheel_directory}/{name}", "w") as wheel:
        for path, text in FILES.items():
            data = text.encode()
            wheel.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{path},sha256={digest},{len(data)}")
        wheel.writestr("tiny-0.dist-info/RECORD", "\\n".join([*record, "tiny-0.dist-info/RECORD,,"]) + "\\n")
    return name


build_editable = build_wheel
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    # make is one of the two things the quick start needs (the suite itself runs under `make test`): no skip.
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "backend.py").write_text(BACKEND)
    return tmp_path


def make(project: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_NO_INDEX": "1"}  # the tiny project needs no package: no index is asked
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        ["make", ".venv/.installed", f"PYTHON={sys.executable}"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def pip_works(project: Path) -> bool:
    python = project / ".venv" / "bin" / "python"
    return subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0


def test_a_virtualenv_left_without_pip_is_made_again(project):
    """As a first `make dev` interrupted while the virtualenv was being made leaves it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", ".venv"], cwd=project, check=True)
    assert not pip_works(project)

    made = make(project)

    assert made.returncode == 0, made.stdout + made.stderr
    assert pip_works(project)
    assert (project / ".venv" / ".installed").is_file()
    shown = subprocess.run([project / ".venv" / "bin" / "python", "-m", "pip", "show", "tiny"], capture_output=True)
    assert shown.returncode == 0, "the project is installed in the new virtualenv"


def test_a_sound_virtualenv_is_kept(project):
    assert make(project).returncode == 0
    (project / ".venv" / "kept").touch()
    (project / "pyproject.toml").write_text(PYPROJECT + "\n")  # newer than the stamp: installs again

    made = make(project)

    assert made.returncode == 0, made.stdout + made.stderr
    assert (project / ".venv" / "kept").is_file(), "the working virtualenv was not made anew"
    assert "pip install" in made.stdout
