"""`podflow`: run the ingest flow on a feed with a live per-stage display, or on the bundled demo feed."""

from __future__ import annotations

import os

# Before Prefect is imported: no analytics from an offline machine, and the live display (not Prefect's per-task
# INFO lines) owns the terminal; the runs' logs still reach the Prefect API and its UI.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
# The first run creates and migrates Prefect's database before its ephemeral API answers: over Prefect's default 20 s
# on a 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import inspect  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any  # noqa: E402

import typer  # noqa: E402

from flows.cli_display import StageDisplay, console, failures_kept_for_the_summary, print_ledger, print_run  # noqa: E402
from flows.cli_options import COMMON, COMMON_SETTINGS, PanelledCommand, in_panel_order, setting_option  # noqa: E402
from flows.config import (  # noqa: E402
    CONFIG_FILE,
    ConfigError,
    Given,
    command_settings,
    commented_config,
    setting_fields,
    settings_toml,
)
from flows.demo_server import serving  # noqa: E402
from flows.ingest import ingest_feeds, listening  # noqa: E402
from flows.limits import limits_app  # noqa: E402
from tasks.errors import TranscriptionError  # noqa: E402
from tasks.files import atomic_write_text  # noqa: E402
from tasks.ledger_db import LedgerDB  # noqa: E402
from tasks.metadata import metadata_json_schema  # noqa: E402
from tasks.models import RunReport, Settings  # noqa: E402
from tasks.transcribe.base import hears_audio  # noqa: E402
from tasks.version import podflow_version  # noqa: E402

DEMO_DIR = Path(__file__).parent / "demo"
# Fixed, because the feed URL names the output folder: a second demo run must find the first one's work.
DEMO_PORT = 47123

# Plain help (click's layout), not rich's table: at 80 columns rich cuts option names short (`--transcribe-work…`).
app = typer.Typer(
    help="podflow: download, transcribe and describe every episode of a podcast feed.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
CONFIG_OPTION = typer.Option(
    "--config",
    metavar="FILE",
    help=f"A TOML file of settings; default: $PODFLOW_CONFIG, else ./{CONFIG_FILE} where there is one.",
    rich_help_panel=COMMON,
)


def print_version(asked: bool) -> None:
    if asked:
        print(f"podflow {podflow_version()}")
        raise typer.Exit()


@app.callback()
def main(
    _version: Annotated[
        bool | None,
        typer.Option("--version", callback=print_version, is_eager=True, help="Print podflow's version and exit."),
    ] = None,
) -> None:
    """podflow: download, transcribe and describe every episode of a podcast feed."""


def switch(name: str, description: str) -> inspect.Parameter:
    """An on/off option of `podflow ingest` that is no setting, in the common panel."""
    option = typer.Option(f"--{name.replace('_', '-')}", help=description, rich_help_panel=COMMON)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[bool, option])


def settings_or_exit(flags: dict[str, Any], config: Path | None) -> tuple[Settings, dict[str, Given]]:
    """The command's Settings from flags, environment and file, and each value's source; or one error line and
    exit status 2."""
    try:
        return command_settings(flags, config)
    except ConfigError as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(2) from None


def given_flags(given: dict[str, object]) -> dict[str, object]:
    """The setting flags given on the command line: an option not given is None, a repeatable one not given ()."""
    values: dict[str, object] = {}
    for name, value in given.items():
        if isinstance(value, (list, tuple)):
            value = tuple(value) or None
        if value is not None:
            values[name] = value
    return values


def run(
    feed_urls: list[str], opml: str | None, settings: Settings, details: bool = False, verbose: bool = False
) -> int:
    """Ingest the feeds with the live display, then say how each went; the exit status is 1 when anything failed."""
    display = StageDisplay()
    with failures_kept_for_the_summary(verbose), display, listening(display):
        state = ingest_feeds(feed_urls, opml, settings, return_state=True)
    outcome = state.result(raise_on_failure=False)
    failure = (state.message or "no reason given") if state.is_failed() else None
    print_run(outcome if isinstance(outcome, RunReport) else None, failure, details, verbose)
    return 1 if failure is not None else 0


def ingest(
    feed_urls: list[str] | None,
    opml: str | None,
    config: Path | None,
    dry_run: bool,
    details: bool,
    verbose: bool,
    **given: object,
) -> None:
    """Ingest every new episode of each FEED_URL and of each feed in the OPML file, in one pipeline.

    Each setting comes from its option, else its PODFLOW_<NAME> environment variable, else the config file, else
    its default (`podflow config show` prints them all)."""
    if not feed_urls and not opml:
        raise typer.BadParameter("give at least one FEED_URL, or --opml")
    settings, _ = settings_or_exit(given_flags(given), config)
    if dry_run:
        from flows.dry_run import print_plan

        raise typer.Exit(print_plan(feed_urls or [], opml, settings))
    raise typer.Exit(run(feed_urls or [], opml, settings, details, verbose))


# What only `podflow worker` is told: a run starts no workers.
WORKER_ONLY = {"worker_slots"}

# typer reads the options from the signature: the feeds, then one option per setting.
ingest.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter(
            "feed_urls",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=None,
            annotation=Annotated[
                list[str] | None, typer.Argument(metavar="FEED_URL", help="RSS or Atom feed URLs.", show_default=False)
            ],
        ),
        *(setting_option(name, setting_fields()[name]) for name in COMMON_SETTINGS),
        inspect.Parameter(
            "opml",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                str | None,
                typer.Option(
                    metavar="FILE|URL", help="An OPML file or URL listing feeds to ingest too.", rich_help_panel=COMMON
                ),
            ],
        ),
        inspect.Parameter(
            "config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[Path | None, CONFIG_OPTION]
        ),
        switch(
            "dry_run",
            "Read the feeds and print what a run would do (episodes chosen, their declared size and length, which "
            "are done), downloading no audio and writing nothing.",
        ),
        switch("details", "At the end, a row per episode of each feed."),
        switch("verbose", "Each failure's chain of errors, and the traceback of a bug."),
        *(
            setting_option(name, setting_fields()[name])
            for name in in_panel_order(list(setting_fields()))
            if name not in WORKER_ONLY and name not in COMMON_SETTINGS
        ),
    ]
)
INGEST_EXAMPLES = """Examples:

\b
  podflow ingest https://example.com/feed.xml
  podflow ingest --opml subscriptions.opml --newest 3 -o ~/podcasts
  podflow ingest https://example.com/fr.xml --model bundled:base --language fr
  PODFLOW_NEWEST=1 podflow ingest --dry-run https://example.com/feed.xml
"""
app.command(cls=PanelledCommand, epilog=INGEST_EXAMPLES)(ingest)


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder.")] = Path("podflow-demo"),
) -> None:
    """Serve the bundled demo feed on 127.0.0.1 and ingest it end to end."""
    with serving(DEMO_DIR, DEMO_PORT) as base_url:
        feed_url = base_url + "feed.xml"
        console.print(f"Serving the demo feed at {feed_url}")
        # The demo's episodes are on this machine, which podflow refuses to reach unless allowed.
        status = run([feed_url], None, Settings.of(output_dir=output, allowed_networks=("127.0.0.1/32",)))
    console.print(f"Output in {output.resolve()}. Run again: nothing is redone; delete it to start over.")
    raise typer.Exit(status)


WORKER_SETTINGS = ("worker_slots", "transcriber", "model", "device", "compute_type")


def worker(ctx: typer.Context, scheduler: str, config: Path | None, **given: object) -> None:
    """Start a Dask worker that hears audio for runs with --transcribe-cluster SCHEDULER: its model loaded once
    and kept; each run's transcriber, model, device and compute type checked against it. Options this command
    does not know go to `dask worker` (--name, --local-directory, --nanny/--no-nanny ...)."""
    try:
        from tasks.transcribe.cluster_worker import dask_worker_command  # Dask is an optional extra
    except TranscriptionError as exc:
        raise typer.BadParameter(str(exc)) from None

    settings, _ = settings_or_exit(given_flags(given), config)
    if not hears_audio(settings):
        raise typer.BadParameter(
            f"{settings.transcribe.transcriber} does not hear audio itself: a worker has nothing to run"
        )
    command, environment = dask_worker_command(scheduler, settings, ctx.args)
    # exec, not a child: the process an operator (or a test) started is the worker, signals and PID included.
    os.execve(command[0], command, environment)


worker.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        inspect.Parameter(
            "scheduler",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=Annotated[str, typer.Argument(metavar="SCHEDULER", help="The Dask scheduler: tcp://HOST:8786.")],
        ),
        inspect.Parameter(
            "config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[Path | None, CONFIG_OPTION]
        ),
        *(setting_option(name, setting_fields()[name]) for name in WORKER_SETTINGS),
    ]
)
app.command(cls=PanelledCommand, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(worker)
app.add_typer(limits_app, name="limits")
config_app = typer.Typer(help="The settings podflow reads from flags, PODFLOW_* variables and podflow.toml.")
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(config: Annotated[Path | None, CONFIG_OPTION] = None) -> None:
    """Print every setting `podflow ingest` would use here and where each comes from, as TOML; secrets masked."""
    print(settings_toml(*settings_or_exit({}, config)), end="")


@config_app.command("init")
def config_init(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="Where to write it.")] = CONFIG_FILE,
    force: Annotated[bool, typer.Option("--force", help="Replace a file that is there.")] = False,
) -> None:
    """Write a podflow.toml naming every setting, its description and default, each line commented out."""
    if path.exists() and not force:
        raise typer.BadParameter(f"{path} exists; --force replaces it", param_hint="FILE")
    atomic_write_text(path, commented_config())
    print(f"Wrote {path}: uncomment a line to change that setting.")


@app.command()
def ledger(
    feed_folder: Annotated[Path, typer.Argument(metavar="FEED_FOLDER", help="A feed's folder in the output folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="The whole ledger as one JSON document.")] = False,
) -> None:
    """Print a feed's ledger: every episode podflow has seen in it and how each stage went."""
    if not LedgerDB(feed_folder, "").exists():
        raise typer.BadParameter(f"{feed_folder} holds no podflow ledger", param_hint="FEED_FOLDER")
    found = LedgerDB(feed_folder, "").read()
    if as_json:
        print(found.model_dump_json(indent=2))
    else:
        print_ledger(found)


@app.command()
def schema() -> None:
    """Print the JSON Schema of metadata.json."""
    print(metadata_json_schema(), end="")
