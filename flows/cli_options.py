"""The options of `podflow ingest` and `podflow worker`, generated from the fields of Settings, and their help in
panels that follow the settings groups, the options a user changes first at the top."""

from __future__ import annotations

import inspect
from datetime import datetime
from pathlib import Path
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin

import typer
from pydantic.fields import FieldInfo
from typer import _click  # typer's own copy of click, whose Command typer's commands are
from typer.core import TyperCommand

from flows.config import option_names
from tasks.models.settings import GROUP_OF
from tasks.models.units import BYTES, human, unit_of

COMMON = "Common options"
# The options most runs change, shown first whatever their group.
COMMON_SETTINGS = ("output_dir", "model", "language", "newest", "transcriber", "enrich")
# Each settings group's panel, in the order `--help` shows them.
PANELS = {
    "selection": "Which episodes",
    "transcribe": "Transcription",
    "download": "Download",
    "metadata": "Metadata",
    "openai": "OpenAI API (transcriber=openai, enrich=openai)",
    "network": "Network",
    "documents": "Limits on feeds, OPML lists and published transcripts",
    "cluster": "Dask cluster (transcribe_cluster)",
    "output": COMMON,
}
METAVAR = {"allowed_networks": "CIDR"}


class PanelledCommand(TyperCommand):
    """Plain click help (rich cuts long option names short at 80 columns), its options in titled sections by each
    option's `rich_help_panel`, in the order the panels first appear."""

    def format_options(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        arguments: list[tuple[str, str]] = []
        panels: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":  # its metavar, not typer's `FEED_URL <list[str]>`
                arguments.append((param.metavar or param.name or "", getattr(param, "help", None) or ""))
            elif (record := param.get_help_record(ctx)) is not None:
                panels.setdefault(getattr(param, "rich_help_panel", None) or COMMON, []).append(record)
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        for panel, records in panels.items():
            with formatter.section(panel):
                formatter.write_dl(records)


def panel_of(name: str) -> str:
    return COMMON if name in COMMON_SETTINGS else PANELS[GROUP_OF[name]]


def in_panel_order(names: list[str]) -> list[str]:
    """The settings group after group, in PANELS order."""
    return sorted(names, key=lambda name: list(PANELS).index(GROUP_OF[name]))


def setting_option(name: str, field: FieldInfo) -> inspect.Parameter:
    """The option of one Settings field: its type, its name, and help from its description and default.

    Values are only parsed here (a number, a date); Settings validates them, so the CLI, the environment, the file
    and the Prefect UI form accept the same. A size or a time is text (`20 MiB`, `3 h`), read by its type."""
    kind, metavar, repeated = field.annotation, METAVAR.get(name), False
    if get_origin(kind) in (Union, UnionType):  # `X | None`
        kind = next(arg for arg in get_args(kind) if arg is not type(None))
    if get_origin(kind) is Annotated:  # PositiveInt: int with a constraint
        kind = get_args(kind)[0]
    if get_origin(kind) in (tuple, list):  # the option repeated, once for each value
        kind, repeated = get_args(kind)[0], True
    if (unit := unit_of(field)) is not None:
        kind, metavar = str, "SIZE" if unit == BYTES else "TIME"
    elif get_origin(kind) is Literal:
        metavar = metavar or "[" + "|".join(map(str, get_args(kind))) + "]"
        kind = str
    elif kind not in (bool, int, float, Path, datetime):
        kind = str  # IP networks and anything else: Settings parses the text
    if kind is datetime:
        metavar = metavar or "YYYY-MM-DD[THH:MM:SS]"
    metavar = metavar or {int: "N", float: "X", Path: "PATH"}.get(kind, "TEXT")  # type: ignore[arg-type]
    decls = option_names(name)
    default = human(field, field.default)
    if kind is bool:
        on, off = decls[0], f"--no-{decls[0].removeprefix('--')}"
        decls, default = (f"{on}/{off}",), on if field.default else off
    text = f"{field.description} {'Repeatable. ' if repeated else ''}[default: {default}]"
    annotation = (list[kind] if repeated else kind) | None  # type: ignore[valid-type]
    option = typer.Option(*decls, help=text, metavar=metavar, show_default=False, rich_help_panel=panel_of(name))
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[annotation, option]
    )
