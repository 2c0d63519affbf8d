"""Stage limits across runs: Prefect tag concurrency limits on `podflow-<stage>`, and `podflow limits` to set them.

A run's `*_workers` settings bound one run; these bound every run that shares one Prefect API (one transcription at
a time on a shared GPU). Prefect 3.9.1 stores a tag limit as the global concurrency limit `tag:<tag>`; its v1
`/concurrency_limits/` routes are an adapter over those; `read_stage_limits` reads them by name, for the CLI and for
each run (`limited_stage_tags`).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Annotated

import httpx
import typer
from prefect import get_client, get_run_logger
from prefect.exceptions import ObjectNotFound
from rich.console import Console
from rich.table import Table

from tasks.stages import STAGES, StageName, registered_stage, stage_tag

console = Console()


def limit_name(stage: StageName) -> str:
    """The global concurrency limit Prefect keeps for the stage's tag."""
    return f"tag:{stage_tag(stage)}"


@dataclass(frozen=True)
class StageLimit:
    stage: StageName
    tag: str
    limit: int
    active_slots: int
    active: bool  # a limit disabled in Prefect (`prefect gcl disable`) is kept but bounds nothing


def _check(stage: str, limit: int) -> None:
    registered_stage(stage)
    # Prefect fails (not delays) every task run of a tag limited to 0, and its v1 API stores negatives unchecked.
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(
            f"the {stage} limit must be a whole number of at least 1, not {limit!r}; "
            "a limit of 0 fails every task run of the stage (remove the limit instead)"
        )


def apply_limits(limits: Mapping[StageName, int]) -> None:
    """Create each stage's tag limit, or set it to the new value where one exists."""
    for stage, limit in limits.items():
        _check(stage, limit)
    with get_client(sync_client=True) as client:
        for stage, limit in limits.items():
            # The same call as `prefect concurrency-limit create`: the server upserts `tag:<tag>` in one transaction.
            client.create_concurrency_limit(tag=stage_tag(stage), concurrency_limit=limit)


def read_stage_limits() -> list[StageLimit]:
    """The stages that have a tag limit, in pipeline order, with the slots their running tasks hold now."""
    found = []
    with get_client(sync_client=True) as client:
        for stage in STAGES:
            try:
                limit = client.read_global_concurrency_limit_by_name(limit_name(stage))
            except ObjectNotFound:
                continue
            found.append(StageLimit(stage, stage_tag(stage), limit.limit, limit.active_slots, limit.active))
    return found


def read_limits() -> dict[StageName, int]:
    """Each limited stage's limit; stages without one are absent."""
    return {found.stage: found.limit for found in read_stage_limits()}


def limited_stage_tags() -> set[str]:
    """The stage tags an operator has bounded across runs (`podflow limits apply`), where the limit is active.

    A limit under 1 is left out with a warning: Prefect fails every task run that asks it for a slot."""
    limited = set()
    for found in read_stage_limits():
        if found.active and found.limit < 1:
            get_run_logger().warning(
                "Ignoring the %s limit of %d: remove it or give it 1 or more", found.tag, found.limit
            )
        elif found.active:
            limited.add(found.tag)
    return limited


def remove_limits(stages: Iterable[StageName] = tuple(STAGES)) -> None:
    """Delete the stages' tag limits; a stage without one is left as it is."""
    stages = list(stages)
    for stage in stages:
        registered_stage(stage)
    with get_client(sync_client=True) as client:
        for stage in stages:
            try:
                client.delete_concurrency_limit_by_tag(stage_tag(stage))
            except ObjectNotFound:
                pass


# The CLI: `podflow limits apply|show|remove`.

limits_app = typer.Typer(
    help="Bound each stage across ALL runs sharing this Prefect API, e.g. one transcription at a time on a shared "
    "GPU; the *_workers settings (ingest --download-workers ...) bound one run only. A run reads the limits when it "
    "starts.",
    no_args_is_help=True,
)

# Typer takes choices as an Enum; built from STAGES so the stage names are written once.
StageChoice = Enum("StageChoice", {stage: stage for stage in STAGES}, type=str)  # type: ignore[misc]


def _across_runs(stage: str) -> str:
    return (
        f"Most {stage} tasks running at once (at least 1) across ALL runs sharing this Prefect API "
        f"(tag {stage_tag(stage)}); --{STAGES[stage].workers.replace('_', '-')} bounds one run."
    )


def _print_limits() -> None:
    limits = read_stage_limits()
    if not limits:
        console.print("No stage limits: each run is bounded only by its own --*-workers settings.")
        return
    table = Table(title="podflow stage limits across runs")
    for column in ("stage", "tag", "limit", "active slots"):
        table.add_column(column)
    for found in limits:
        table.add_row(
            found.stage, found.tag, f"{found.limit}{'' if found.active else ' (disabled)'}", str(found.active_slots)
        )
    console.print(table)


@contextmanager
def _reaching_prefect() -> Iterator[None]:
    """An API that cannot be reached or refuses is an expected failure: said in one line, exit status 1."""
    try:
        yield
    except httpx.HTTPError as exc:
        console.print(f"Prefect API error: {exc}", style="red", soft_wrap=True, markup=False)
        raise typer.Exit(1) from exc


def apply(**given: int | None) -> None:
    """Create or change the stage limits given; stages not named keep theirs."""
    limits = {stage: limit for stage, limit in given.items() if limit is not None}
    if not limits:
        raise typer.BadParameter(f"give at least one of {', '.join('--' + stage for stage in STAGES)}")
    with _reaching_prefect():
        try:
            apply_limits(limits)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        _print_limits()


# One option per registered stage: typer reads them from the signature.
apply.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter(
            stage,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[int | None, typer.Option(f"--{stage.replace('_', '-')}", help=_across_runs(stage))],
        )
        for stage in STAGES
    ]
)
limits_app.command()(apply)


@limits_app.command()
def show() -> None:
    """Print each stage's limit and the slots its running tasks hold."""
    with _reaching_prefect():
        _print_limits()


@limits_app.command()
def remove(
    stages: Annotated[
        list[StageChoice] | None, typer.Argument(help="Stages to unbound; all when none given.", show_default=False)
    ] = None,
) -> None:
    """Delete the stage limits named, or all of them."""
    chosen: list[StageName] = [stage.value for stage in stages] if stages else list(STAGES)
    with _reaching_prefect():
        remove_limits(chosen)
        _print_limits()
