"""The Prefect glue the `@task` wrappers at the end of each `tasks/<stage>.py` share: an expected failure as a quiet
Failed state, and task-run names the Prefect UI lists. The stage logic above them runs without Prefect."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect.states import Failed, State
from prefect.tasks import TaskRunNameCallbackWithParameters

from tasks.errors import PodflowError
from tasks.folder_names import slugify
from tasks.models import Episode, StageName
from tasks.redaction import redact_url

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
        episode: Episode = parameters["episode"]
        date = episode.published.strftime("%Y-%m-%d") if episode.published else "undated"
        return f"{stage} · {date} · {slugify(episode.title)}"

    return name  # type: ignore[return-value]  # a function is the protocol's callable; mypy cannot see it


def fetch_feed_run_name(parameters: dict[str, Any]) -> str:
    """Names a feed's fetch after its URL, credentials masked: `fetch-feed · https://host/feed.xml`."""
    return f"fetch-feed · {redact_url(parameters['url'])}"
