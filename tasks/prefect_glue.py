"""The Prefect glue the `@task` wrappers at the end of each `tasks/<stage>.py` share: `stage_task`, which makes a
stage's function its task; an expected failure as a quiet Failed state; task-run names the Prefect UI lists. The
stage logic above them runs without Prefect."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State
from prefect.tasks import TaskRunNameCallbackWithParameters

from tasks.errors import PodflowError, StorageError
from tasks.feed_run import FeedEpisode
from tasks.folder_names import slugify
from tasks.models import Settings
from tasks.redaction import redact_url
from tasks.stages import STAGES, StageName, load

P = ParamSpec("P")
R = TypeVar("R")


def fail_quietly(stage_fn: Callable[P, R]) -> Callable[P, R | State]:
    """Turn an expected PodflowError into a Failed task state carrying its message, with no traceback in the logs;
    anything unexpected still raises with its traceback."""

    @functools.wraps(stage_fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | State:
        try:
            return stage_fn(*args, **kwargs)
        except PodflowError as exc:
            return Failed(message=f"{type(exc).__name__}: {exc}")

    return wrapper


def episode_run_name(stage: StageName) -> TaskRunNameCallbackWithParameters:
    """Names a stage's task run after its episode, as the Prefect UI lists it: `transcribe · 2026-11-20 · slug`."""

    def name(parameters: dict[str, Any]) -> str:
        episode = parameters["job"].episode
        date = episode.published.strftime("%Y-%m-%d") if episode.published else "undated"
        return f"{stage} · {date} · {slugify(episode.title)}"

    return name  # type: ignore[return-value]  # a function is the protocol's callable; mypy cannot see it


def fetch_feed_run_name(parameters: dict[str, Any]) -> str:
    """Names a feed's fetch after its URL, credentials masked: `fetch-feed · https://host/feed.xml`."""
    return f"fetch-feed · {redact_url(parameters['url'])}"


@dataclass(frozen=True)
class Stored:
    """Given to a stage in place of an upstream stage's result where that stage was done in an earlier run: the
    task reads it back from the episode folder (the upstream's `stored` in tasks/stages.py) when it starts."""

    stage: StageName

    def result(self, job: FeedEpisode) -> Any:
        reader = STAGES[self.stage].stored
        found = load(reader)(job) if reader else None
        if found is None:
            raise StorageError(f"the {self.stage} stage's result is no longer in {job.folder.path}")
        return found


def settings_taken(task: Task[..., Any], settings: Settings, takes: Mapping[str, StageName]) -> dict[str, Any]:
    """What of the settings a stage's task takes: each group one of its parameters names (`download`, `network`,
    … ), or all of them where it names `settings`. A parameter that takes an upstream result is not a setting."""
    return {
        name: settings if name == "settings" else getattr(settings, name)
        for name in inspect.signature(task.fn).parameters
        if name not in takes and (name == "settings" or name in Settings.model_fields)
    }


def stage_task(name: StageName) -> Callable[[Callable[..., Any]], Task[..., Any]]:
    """Make `fn(job, **given)` the stage `name`'s Prefect task, given the settings groups it names and its upstream
    results (settings_taken, tasks/stages.py's `takes`): each run named after its episode, its start, end and
    outcome recorded in the feed's ledger, its Stored inputs read back, an expected PodflowError a quiet Failed
    state. `fn` may also take `recording` (tasks/store.py's StageRecording) to hand the ledger more."""

    def make(fn: Callable[..., Any]) -> Task[..., Any]:
        signature = inspect.signature(fn)
        records = "recording" in signature.parameters

        @functools.wraps(fn)
        def run(job: FeedEpisode, **given: Any) -> Any:
            try:
                with job.store.recording(job.episode.episode_id, name) as recording:
                    inputs = {k: v.result(job) if isinstance(v, Stored) else v for k, v in given.items()}
                    return fn(job, **inputs, **({"recording": recording} if records else {}))
            except PodflowError as exc:
                return Failed(message=f"{type(exc).__name__}: {exc}")

        # Prefect binds a run's parameters by this signature: the stage's own less what the wrapper gives, all but
        # the episode by name (keyword-only, as `run` takes them).
        run.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[
                p if p.name == "job" else p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                for p in signature.parameters.values()
                if p.name != "recording"
            ]
        )
        return task(name=name, cache_policy=NO_CACHE, task_run_name=episode_run_name(name))(run)

    return make
