"""The worker's side of transcription on a Dask cluster (cluster.py is the flow's): what `podflow worker` preloads
into each `dask worker` process, and the task it runs. The model is loaded once, when the worker starts, from the
settings `podflow worker` was given; each transcription is checked against them. Imports no Prefect: a worker
needs only the transcribers."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from tasks.errors import AudioNotVisibleError, ClusterError, ModelMismatchError, TranscriptionError
from tasks.events import Heard, StageEvent, by_tenths
from tasks.files import sha256_of
from tasks.models import AudioFile, Episode, Settings, Transcript
from tasks.transcribe.base import load_backend
from tasks.transcribe.model_choice import choose_model, heard_with

try:
    import distributed
except ImportError as exc:  # an optional extra: only the flows and workers that use a cluster need it
    raise TranscriptionError("transcribe_cluster needs Dask: pip install 'podflow[cluster]'") from exc

RESOURCE = "transcribe"
TOPIC = "podflow-transcribe"  # the events workers log as they take and hear an episode
WORKER_SETTINGS_VARIABLE = "PODFLOW_WORKER_SETTINGS"  # `podflow worker` hands the worker process its settings here


class WorkerModel(NamedTuple):
    """What a worker loads once and keeps, and a flow's settings must agree with."""

    transcriber: str
    model: str
    device: str
    compute_type: str | None

    @classmethod
    def of(cls, settings: Settings) -> WorkerModel:
        return cls(
            settings.transcribe.transcriber,
            settings.transcribe.model,
            settings.transcribe.device,
            settings.transcribe.compute_type,
        )

    def serves(self, wanted: WorkerModel) -> bool:
        """The same transcriber and model; the same device and compute type, unless the flow leaves them to the
        worker (device auto, no compute type)."""
        return (
            (self.transcriber, self.model) == (wanted.transcriber, wanted.model)
            and wanted.device in ("auto", self.device)
            and wanted.compute_type in (None, self.compute_type)
        )

    def __str__(self) -> str:
        return f"{self.transcriber} {self.model} on {self.device} ({self.compute_type or 'default'} compute type)"


_serving: Settings | None = None  # the settings `podflow worker` gave this worker process, its model chosen


def dask_worker_command(
    scheduler: str, settings: Settings, options: Sequence[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """The `dask worker` command line and environment `podflow worker` runs: one thread and one transcribe slot per
    settings.cluster.worker_slots, this module preloaded with the settings; `options` go to `dask worker`."""
    slots = str(settings.cluster.worker_slots)
    command = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--nthreads", slots]
    command += ["--resources", f"{RESOURCE}={slots}", "--preload", __name__, *options]
    return command, {**os.environ, WORKER_SETTINGS_VARIABLE: settings.model_dump_json()}


def dask_setup(worker: distributed.Worker) -> None:
    """Dask's preload hook (`dask worker --preload tasks.transcribe.cluster_worker`): load the worker's model once,
    before it takes any task, from the settings `podflow worker` put in the environment."""
    global _serving
    try:
        given = Settings.model_validate_json(os.environ[WORKER_SETTINGS_VARIABLE])
        # One model for every episode: of model auto, the one for episodes declaring no language.
        settings = heard_with(given, choose_model(given.transcribe))
        load_backend(settings, settings.cluster.worker_slots)
    except Exception as exc:
        # Dask logs a preload's error and starts the worker anyway, slots and all: it would take every episode and
        # fail it. Exit instead, so it never offers a slot.
        print(f"podflow worker: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        os._exit(1)
    _serving = settings


def sees(path: str, size: int) -> bool:
    """Whether this worker finds a file of this size at the flow's path (run on every worker before sending)."""
    try:
        return os.stat(path).st_size == size
    except OSError:
        return False


@contextmanager
def audio_on_worker(audio: AudioFile, sent: bytes | None, folder: Path) -> Iterator[AudioFile]:
    """The audio as a file this worker can read: the bytes sent, written to a file of its own and removed after;
    or the flow's own file, when none were sent and the one at its path has its size and hash."""
    if sent is None:
        try:
            same = sees(str(audio.path), audio.bytes) and sha256_of(audio.path) == audio.sha256
        except OSError:  # there, but not readable by the worker's user
            same = False
        if not same:
            raise AudioNotVisibleError(f"the worker does not see {audio.path} as the flow wrote it")
        yield audio
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        copy = tempfile.NamedTemporaryFile(dir=folder, prefix="podflow-", suffix=audio.path.suffix)  # noqa: SIM115
        copy.write(sent)
        copy.flush()
    except OSError as exc:  # a full disk: the worker's, not the cluster's connection
        raise TranscriptionError(f"the worker cannot keep the audio in {folder}: {exc}") from None
    with copy:
        yield audio.model_copy(update={"path": Path(copy.name)})


def hear(key: str, audio: AudioFile, sent: bytes | None, episode: Episode, settings: Settings) -> Transcript:
    """The task a worker runs: the episode's transcript by this worker's model, with the flow's other settings."""
    worker = distributed.get_worker()
    if _serving is None:
        raise ClusterError(f"worker {worker.address} was not started by `podflow worker`: it has no model loaded")
    mine, wanted = WorkerModel.of(_serving), WorkerModel.of(settings)
    if not mine.serves(wanted):
        raise ModelMismatchError(
            f"worker {worker.address} runs {mine}; this flow asks for {wanted}. Start the workers with the flow's "
            "transcriber, model, device and compute type, or give the flow theirs"
        )

    def note(event: str, **facts: Any) -> None:
        said = {"key": key, "episode": audio.episode_id, "worker": worker.address, "pid": os.getpid()}
        worker.log_event(TOPIC, {"event": event, **said, **facts})

    def heard(event: StageEvent) -> None:  # the flow's side hears the rest; Heard goes back, once a tenth
        if isinstance(event, Heard):
            note("heard", done_s=event.done_s, total_s=event.total_s)

    with audio_on_worker(audio, sent, Path(worker.local_directory) / "podflow-audio") as local:
        note("started", audio="bytes" if sent is not None else "path")
        worker_settings = settings.but(**mine._asdict())
        transcript = load_backend(_serving, _serving.cluster.worker_slots).transcribe(
            local, episode, worker_settings, by_tenths(heard)
        )
    note("finished")
    return transcript
