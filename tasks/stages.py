"""The stages podflow runs for every episode: their names, what each takes from the stages before it, and where its
code lives.

Adding one is a module and a line in STAGES (docs/extending.md). The flow's wiring, `podflow limits`, the
ledger, the reports, the progress display, the Prefect artifacts and the CLI all read STAGES. Like
tasks/transcribers.py, this module imports nothing of podflow's and no stage's code: a stage's module (and Prefect
with it) is imported only when a flow wires it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

StageName = str  # a key of STAGES


def load(target: str) -> Any:
    """`"package.module:name"`, its module imported now."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class StageInfo:
    """One stage of the pipeline.

    `task` is its Prefect task (made with tasks/prefect_glue.py's `stage_task`), called with the episode, the
    settings groups its parameters name, and one parameter per entry of `takes`: the result of the upstream stage
    named, so a stage may take several upstreams and the stages form a graph. `workers` names the setting bounding
    how many of its tasks run at once in a run. `output` is the file it writes last in the episode folder: with
    the ledger's "done", the stage's work is there (removed, the stage runs again). `stored`, for a stage others
    take from, reads its result back from the folder, so an episode done before a stage was added gives the new
    stage its inputs without running the stages before it again.
    """

    description: str
    task: str
    workers: str
    takes: Mapping[str, StageName] = field(default_factory=dict)
    output: str | None = None
    stored: str | None = None
    in_processes: str | None = None  # `(settings) -> bool`: run the stage's workers as processes, not threads

    @property
    def upstream(self) -> tuple[StageName, ...]:
        return tuple(dict.fromkeys(self.takes.values()))


STAGES: dict[StageName, StageInfo] = {
    "download": StageInfo(
        "fetch the audio, resumed where it stopped, verified by size and hash",
        "tasks.download:download",
        workers="download_workers",
        stored="tasks.download:stored_audio",  # the audio, where still there: it may be deleted once transcribed
    ),
    "transcribe": StageInfo(
        "a published transcript or the chosen transcriber: text, JSON, SRT and WebVTT",
        "tasks.transcribe.stage:transcribe",
        workers="transcribe_workers",
        takes={"audio": "download"},
        output="transcript.json",
        stored="tasks.transcribe.stage:stored_transcript",
        in_processes="tasks.transcribe.base:runs_in_processes",
    ),
    "metadata": StageInfo(
        "metadata.json: feed, episode, audio, transcript and processing facts, and their enrichment",
        "tasks.metadata:metadata",
        workers="metadata_workers",
        takes={"audio": "download", "transcript": "transcribe"},
        output="metadata.json",
        stored="tasks.metadata:stored_metadata",
    ),
}


def stage_tag(stage: StageName) -> str:
    """The tag a stage's task runs carry where a limit bounds the stage across runs (flows/limits.py)."""
    return f"podflow-{stage}"


def registered_stage(name: str) -> StageName:
    """`name`, when a stage of that name is registered; ValueError naming those that are, when not."""
    if name not in STAGES:
        raise ValueError(f"{name!r} is not a podflow stage ({', '.join(STAGES)})")
    return name


def check_stages(stages: Mapping[StageName, StageInfo]) -> None:
    """Each stage takes only from stages before it, each of which can give its result back from the folder."""
    seen: set[StageName] = set()
    for name, info in stages.items():
        for upstream in info.upstream:
            if upstream not in seen:
                raise ValueError(f"stage {name!r} takes from {upstream!r}, which is not a stage before it")
            if stages[upstream].stored is None:
                raise ValueError(f"stage {name!r} takes from {upstream!r}, which cannot read its result back")
        seen.add(name)


def to_run(stages: Mapping[StageName, StageInfo], not_done: set[StageName]) -> list[StageName]:
    """The stages an episode runs when `not_done` are not done: those, and every stage downstream of one of them
    (its inputs will change), in pipeline order."""
    running: list[StageName] = []
    for name, info in stages.items():
        if name in not_done or any(upstream in running for upstream in info.upstream):
            running.append(name)
    return running


check_stages(STAGES)
