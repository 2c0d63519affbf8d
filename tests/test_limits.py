"""Stage limits across runs, against the real local Prefect API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer
from prefect import flow, get_client, task
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from flows.limits import (
    apply_limits,
    limited_stage_tags,
    limits_app,
    read_limits,
    read_stage_limits,
    remove_limits,
)

runner = CliRunner()
app = typer.Typer()
app.add_typer(limits_app, name="limits")  # as flows/cli.py registers it


@pytest.fixture(autouse=True)
def no_limits(prefect_api: None) -> Iterator[None]:
    """Other tests share this API: a leftover limit would tag (and bound) their tasks."""
    remove_limits()
    yield
    remove_limits()


def test_apply_creates_then_updates_and_runs_see_the_limits() -> None:
    apply_limits({"transcribe": 1, "download": 3})
    assert read_limits() == {"download": 3, "transcribe": 1}
    assert limited_stage_tags() == {"podflow-download", "podflow-transcribe"}

    apply_limits({"transcribe": 2})
    assert read_limits() == {"download": 3, "transcribe": 2}
    [download, transcribe] = read_stage_limits()
    assert (transcribe.tag, transcribe.limit, transcribe.active_slots, transcribe.active) == (
        "podflow-transcribe",
        2,
        0,
        True,
    )


def test_remove_deletes_the_stages_named_and_ignores_missing_ones() -> None:
    apply_limits({"download": 2, "transcribe": 1, "metadata": 4})
    remove_limits(["download", "download"])
    assert read_limits() == {"transcribe": 1, "metadata": 4}
    remove_limits()
    assert read_limits() == {}
    assert limited_stage_tags() == set()


@pytest.mark.parametrize("limits", [{"transcribe": 0}, {"transcribe": -1}, {"transcribe": 1.5}, {"gpu": 1}])
def test_apply_refuses_anything_but_a_positive_limit_on_a_stage(limits: dict) -> None:
    with pytest.raises(ValueError, match="at least 1|not a podflow stage"):
        apply_limits({"download": 2, **limits})
    assert read_limits() == {}  # checked before anything is written


def test_prefect_fails_every_task_run_of_a_tag_limited_to_zero() -> None:
    """Why 0 is refused: Prefect 3.9.1 neither runs nor queues such a task; the run fails with a 422."""
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="podflow-zero-probe", concurrency_limit=0)
    try:

        @task(tags=["podflow-zero-probe"])
        def probe() -> int:
            return 1

        @flow
        def probed() -> int:
            return probe()

        with pytest.raises(Exception, match="Slots requested is greater than the limit"):  # its class is private
            probed()
    finally:
        with get_client(sync_client=True) as client:
            client.delete_concurrency_limit_by_tag("podflow-zero-probe")


def test_cli_apply_show_remove() -> None:
    result = runner.invoke(app, ["limits", "apply", "--transcribe", "1", "--download", "3"])
    assert result.exit_code == 0, result.output
    assert read_limits() == {"download": 3, "transcribe": 1}

    result = runner.invoke(app, ["limits", "show"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "podflow-" in line]
    assert [line.split()[1:6:2] for line in rows] == [
        ["download", "podflow-download", "3"],
        ["transcribe", "podflow-transcribe", "1"],
    ]
    assert [line.split()[-2] for line in rows] == ["0", "0"]  # active slots

    result = runner.invoke(app, ["limits", "remove", "download"])
    assert result.exit_code == 0, result.output
    assert read_limits() == {"transcribe": 1}

    result = runner.invoke(app, ["limits", "remove"])
    assert result.exit_code == 0, result.output
    assert "No stage limits" in result.output
    assert read_limits() == {}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["apply"], "give at least one of --download, --transcribe, --metadata"),
        (
            ["apply", "--transcribe", "0"],
            "the transcribe limit must be a whole number of at least 1, not 0; a limit of 0 fails every task run of "
            "the stage (remove the limit instead)",
        ),
        (["remove", "gpu"], "'gpu' is not one of"),
    ],
)
def test_cli_refuses_what_cannot_be_a_limit(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["limits", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())
    assert read_limits() == {}


def test_cli_help_says_limits_bound_all_runs_and_workers_one() -> None:
    result = runner.invoke(app, ["limits", "apply", "--help"], env={"COLUMNS": "200"})
    text = " ".join(result.output.replace("│", " ").split())
    assert "across ALL runs sharing this Prefect API" in text
    assert "--transcribe-workers bounds one run" in text


def test_cli_says_when_the_prefect_api_cannot_be_reached() -> None:
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        result = runner.invoke(app, ["limits", "show"])
    assert result.exit_code == 1
    assert "Prefect API error" in result.output
