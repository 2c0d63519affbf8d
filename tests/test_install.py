"""podflow installed as a user installs it: a wheel built from the tracked files, into a fresh virtual environment,
with no extra; then `podflow --version` and `podflow demo` from an empty folder, offline, without torch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
pytestmark = pytest.mark.integration


def run(*command: str | Path, cwd: Path, timeout_s: float = 900) -> str:
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The fresh environment's bin folder, and what pip printed installing the wheel."""
    root = tmp_path_factory.mktemp("install")
    clone = root / "clone"  # what a clean clone holds: the tracked files, nothing built
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", root / "dist", clone, cwd=root)
    [wheel] = (root / "dist").glob("podflow-*.whl")
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    printed = run(bin_dir / "pip", "install", "--disable-pip-version-check", wheel, cwd=root)
    return bin_dir, printed


def test_the_wheel_installs_with_no_error_and_no_torch(installed: tuple[Path, str]) -> None:
    bin_dir, printed = installed
    assert not [line for line in printed.splitlines() if line.startswith("ERROR")], printed
    listed = run(bin_dir / "pip", "list", "--format", "freeze", cwd=bin_dir)
    names = {line.split("==")[0].lower() for line in listed.splitlines()}
    assert "podflow" in names and "faster-whisper" in names
    assert not names & {"torch", "triton", "openai-whisper"}


def test_the_installed_podflow_runs_its_demo_from_any_folder(installed: tuple[Path, str], tmp_path: Path) -> None:
    bin_dir, _ = installed
    version = run(bin_dir / "podflow", "--version", cwd=tmp_path)
    assert version.strip() == "podflow " + (REPO / "pyproject.toml").read_text().split('version = "')[1].split('"')[0]
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PODFLOW_CACHE": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [str(bin_dir / "podflow"), "demo"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 complete" in done.stdout
    transcripts = list((tmp_path / "podflow-demo").glob("*/episodes/*/transcript.txt"))
    assert len(transcripts) == 4
    assert "bees" in " ".join(path.read_text().lower() for path in transcripts)  # real speech, really heard


def test_a_transcriber_not_installed_says_how_to_install_it(installed: tuple[Path, str], tmp_path: Path) -> None:
    bin_dir, _ = installed
    probe = (
        "from tasks.transcribers import BACKENDS\n"
        "try:\n    BACKENDS['whisper'].load()\nexcept Exception as exc:\n    print(type(exc).__name__, exc)"
    )
    printed = run(bin_dir / "python", "-c", probe, cwd=tmp_path)
    assert printed.startswith("TranscriptionError openai-whisper, PyTorch is not installed")
    assert "pip install 'podflow[whisper]'" in printed
