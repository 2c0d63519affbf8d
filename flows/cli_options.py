"""The options of `podflow ingest` and `podflow worker`, generated from the fields of Settings."""

from __future__ import annotations

import inspect
from datetime import datetime
from pathlib import Path
from types import UnionType
from typing import Annotated, Literal, Union, get_args, get_origin

import typer
from pydantic.fields import FieldInfo

from tasks.models import Settings

# The settings spelled otherwise on the command line; every other field is `--its-name`, so a new field of Settings
# is an option of `podflow ingest` with no edit here.
SPELLED = {"output_dir": ("--output", "-o"), "allowed_networks": ("--allow-network",), "worker_slots": ("--slots",)}
METAVAR = {"allowed_networks": "CIDR"}


def setting_fields() -> dict[str, FieldInfo]:
    """Every setting by its user-facing name, group after group (tasks/models/settings.py)."""
    return {
        name: field
        for group in Settings.model_fields.values()
        for name, field in group.annotation.model_fields.items()  # type: ignore[union-attr]  # each a group model
    }


def shown(default: object) -> str:
    """A default as a user would type it."""
    if default is None or default == ():
        return "none"
    if isinstance(default, tuple):
        return ", ".join(map(str, default))
    return str(default)


def setting_option(name: str, field: FieldInfo) -> inspect.Parameter:
    """The `ingest` option of one Settings field: its type, its name, and help from its description and default.

    Values are only parsed here (a number, a date); Settings validates them, so the CLI and the Prefect UI form
    accept the same."""
    kind, metavar, repeated = field.annotation, METAVAR.get(name), False
    if get_origin(kind) in (Union, UnionType):  # `X | None`
        kind = next(arg for arg in get_args(kind) if arg is not type(None))
    if get_origin(kind) is Annotated:  # PositiveInt: int with a constraint
        kind = get_args(kind)[0]
    if get_origin(kind) in (tuple, list):  # the option repeated, once for each value
        kind, repeated = get_args(kind)[0], True
    if get_origin(kind) is Literal:
        metavar = metavar or "<" + "|".join(map(str, get_args(kind))) + ">"
        kind = str
    elif kind not in (bool, int, float, Path, datetime):
        kind = str  # IP networks and anything else: Settings parses the text
    if kind is datetime:
        metavar = metavar or "<YYYY-MM-DD[THH:MM:SS]>"
    elif repeated:
        metavar = metavar or f"<{kind.__name__}>"  # one value per option, not typer's <list[...]>
    decls = SPELLED.get(name, (f"--{name.replace('_', '-')}",))
    default = shown(field.default)
    if kind is bool:
        on, off = decls[0], f"--no-{decls[0].removeprefix('--')}"
        decls, default = (f"{on}/{off}",), on if field.default else off
    text = f"{'Repeat the option for each value. ' if repeated else ''}{field.description} (default: {default})"
    annotation = (list[kind] if repeated else kind) | None  # type: ignore[valid-type]
    option = typer.Option(*decls, help=text, metavar=metavar, show_default=False)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[annotation, option]
    )
