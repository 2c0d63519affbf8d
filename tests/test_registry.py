"""The transcriber registry: adding one is what the docs' "Add a transcriber" says, done here with its own two
blocks; every choice the settings offer is registered, loaded lazily, and no transcribe module imports in a cycle."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tasks.transcribe
from tasks.errors import AudioDecodeError
from tasks.models import AudioFile, Settings
from tasks.transcribe.base import runs_in_processes
from tasks.transcribe.stage import transcribe_audio
from tasks.transcribers import BACKENDS, BackendInfo
from tests.audio_files import demo_audio
from tests.conftest import DEMO_EPISODES
from tests.doc_examples import python_blocks
from tests.events import heard_into
from tests.transcripts import assert_files_agree, episode_of

ROOT = Path(__file__).parents[1]
FAKE = "tasks.transcribe.ten_seconds"


@pytest.fixture
def ten_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The docs' fake transcriber as tasks/transcribe/ten_seconds.py (the file in a folder of the package) and the
    docs' line in BACKENDS; the name it is registered under."""
    module, line = python_blocks("extending.md", "Add a transcriber")
    path, code = module.split("\n", 1)
    assert path == f"# {FAKE.replace('.', '/')}.py"
    (tmp_path / "ten_seconds.py").write_text(code)
    monkeypatch.setattr(tasks.transcribe, "__path__", [*tasks.transcribe.__path__, str(tmp_path)])
    entry = line.split("\n", 1)[1]
    [(name, info)] = eval("{" + entry + "}", {"BackendInfo": BackendInfo}).items()  # the docs' line, as written
    monkeypatch.setitem(BACKENDS, name, info)
    try:
        yield name
    finally:
        sys.modules.pop(FAKE, None)
        vars(tasks.transcribe).pop("ten_seconds", None)


def test_a_transcriber_added_as_the_docs_say_transcribes_an_episode(ten_seconds: str, tmp_path: Path) -> None:
    settings = Settings.of(output_dir=tmp_path, transcriber=ten_seconds, language="en")
    assert (
        ten_seconds in Settings.model_json_schema()["$defs"]["TranscribeSettings"]["properties"]["transcriber"]["enum"]
    )  # the UI form offers it
    audio = demo_audio(DEMO_EPISODES[0], tmp_path / "episode")
    assert FAKE not in sys.modules  # imported when chosen, not before
    progress: list[tuple[float, float]] = []

    transcript = transcribe_audio(audio, episode_of(audio), audio.path.parent, settings, heard_into(progress))

    assert (transcript.backend, transcript.model, transcript.language) == (ten_seconds, "bundled:tiny.en", "en")
    assert 10 < transcript.audio_duration_s < 20  # the real decoder measured the clip
    duration_s = pytest.approx(transcript.audio_duration_s, abs=0.001)
    assert [(s.start, s.end, s.text) for s in transcript.segments] == [
        (0, 10, "Ten seconds from 0 s."),
        (10, duration_s, "Ten seconds from 10 s."),
    ]
    assert progress == [(10, duration_s), (duration_s, duration_s)]  # segment by segment, as Whisper's
    assert_files_agree(transcript, audio.path.parent)


def test_the_added_transcriber_gets_its_audio_from_the_one_decoder(ten_seconds: str, tmp_path: Path) -> None:
    path = tmp_path / "audio.mp3"
    path.write_bytes(b"<html>not audio</html>" * 50)
    audio = AudioFile(episode_id="x", path=path, source_url="http://127.0.0.1/x.mp3", bytes=1100, sha256="00")
    with pytest.raises(AudioDecodeError):
        transcribe_audio(audio, episode_of(audio), tmp_path, Settings.of(output_dir=tmp_path, transcriber=ten_seconds))
    assert not (tmp_path / "transcript.json").exists()


def test_only_registered_transcribers_are_taken_and_the_error_names_them() -> None:
    with pytest.raises(
        ValueError, match="no transcriber 'parakeet'; registered: faster-whisper, whisper, openai, published"
    ):
        Settings.of(transcriber="parakeet")


def test_the_setting_and_the_cli_help_describe_every_registered_transcriber() -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    output = CliRunner().invoke(app, ["ingest", "--help"]).output
    help_text = re.sub(r"-\s+", "-", " ".join(output.split()))  # unwrapped, words cut at a hyphen rejoined
    assert all(f"{name} ({info.description})" in help_text for name, info in BACKENDS.items()), help_text
    assert Settings.model_json_schema()["$defs"]["TranscribeSettings"]["properties"]["transcriber"]["enum"] == list(
        BACKENDS
    )


@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_registered_transcriber_loads_a_class_with_the_one_entry_point(name: str) -> None:
    backend = BACKENDS[name].load()
    assert callable(getattr(backend, "transcribe", None)), backend


def test_choosing_faster_whisper_never_imports_torch() -> None:
    script = (
        "import sys; from tasks.models import Settings; from tasks.transcribe.stage import transcribe_audio; "
        "from tasks.transcribe.base import load_backend; load_backend(Settings(), 1); "
        "print(sorted(m for m in ('torch', 'whisper', 'openai', 'av') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False
    )
    assert result.stdout.strip() == "['av']", result.stderr  # av: the one decoder


def test_worker_processes_are_chosen_from_the_registry() -> None:
    assert runs_in_processes(Settings.of(transcriber="whisper", device="cuda"))
    assert not runs_in_processes(Settings.of(transcriber="whisper", device="cpu"))
    assert not runs_in_processes(Settings.of(transcriber="faster-whisper", device="cuda"))
    assert runs_in_processes(Settings.of(transcriber="faster-whisper", transcribe_pool="processes"))


def imports(path: Path) -> set[str]:
    """The modules a file imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def test_no_transcribe_module_imports_in_a_cycle_and_the_base_imports_no_backend() -> None:
    modules = {f"tasks.transcribe.{p.stem}": p for p in (ROOT / "tasks/transcribe").glob("*.py")}
    modules |= {
        "tasks.transcribe": modules.pop("tasks.transcribe.__init__"),
        "tasks.models": ROOT / "tasks/models/__init__.py",
        "tasks.transcribers": ROOT / "tasks/transcribers.py",
    }
    modules |= {f"tasks.models.{p.stem}": p for p in (ROOT / "tasks/models").glob("*.py") if p.stem != "__init__"}
    graph = {name: imports(path) & set(modules) for name, path in modules.items()}
    assert graph["tasks.transcribers"] == set()
    assert graph["tasks.transcribe.base"] <= {
        "tasks.models",
        "tasks.transcribers",
        "tasks.transcribe.windows",
        "tasks.transcribe.languages",
        "tasks.transcribe.model_choice",
    }
    assert graph["tasks.transcribe.languages"] == set()  # the settings read it
    assert graph["tasks.transcribe.windows"] <= {"tasks.models"}

    def cycle_from(name: str, trail: tuple[str, ...]) -> tuple[str, ...] | None:
        if name in trail:
            return (*trail, name)
        return next((c for n in graph[name] if (c := cycle_from(n, (*trail, name)))), None)

    assert [c for name in graph if (c := cycle_from(name, ()))] == []
