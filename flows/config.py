"""Where a command's settings come from: its flags, then `PODFLOW_*` environment variables, then a TOML file
(`--config FILE`, else `$PODFLOW_CONFIG`, else `./podflow.toml`), then the defaults.

Every value keeps its source, so that `podflow config show` can print it and a bad value is refused naming the
source and the key, before the command reaches the network. A deployment's runs take their settings from the
deployment's parameters instead: these sources are the command line's.
"""

from __future__ import annotations

import difflib
import json
import os
import textwrap
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from tasks.errors import PodflowError
from tasks.models import Settings
from tasks.models.settings import GROUP_OF
from tasks.models.units import human, unit_of
from tasks.redaction import redact_credentials

CONFIG_FILE = Path("podflow.toml")
CONFIG_VARIABLE = "PODFLOW_CONFIG"
# podflow's own variables that name no setting.
OTHER_VARIABLES = {CONFIG_VARIABLE, "PODFLOW_CACHE"}
# The settings spelled otherwise on the command line (and so in the environment); every other one is --its-name.
SPELLED = {"output_dir": ("--output", "-o"), "allowed_networks": ("--allow-network",), "worker_slots": ("--slots",)}
# Settings whose values may carry a credential: shown masked.
URL_SETTINGS = {"openai_base_url", "transcribe_cluster"}
DEFAULT = "default"


class ConfigError(PodflowError):
    """A setting's value, from whichever source, is not one podflow can use."""


@dataclass(frozen=True)
class Given:
    """A setting's value and where it came from: a flag, an environment variable, a file, or `default`."""

    value: Any
    source: str


def setting_fields() -> dict[str, FieldInfo]:
    """Every setting by its user-facing name, group after group (tasks/models/settings.py)."""
    return {
        name: field
        for group in Settings.model_fields.values()
        for name, field in group.annotation.model_fields.items()  # type: ignore[union-attr]  # each a group model
    }


def option_names(name: str) -> tuple[str, ...]:
    """A setting's flags: `--its-name`, or as SPELLED."""
    return SPELLED.get(name, (f"--{name.replace('_', '-')}",))


def environment_variable(name: str) -> str:
    """`--transcribe-workers` -> `PODFLOW_TRANSCRIBE_WORKERS`, `--output` -> `PODFLOW_OUTPUT`."""
    return "PODFLOW_" + option_names(name)[0].removeprefix("--").replace("-", "_").upper()


def is_list(field: FieldInfo) -> bool:
    kind = field.annotation
    return get_origin(kind) in (tuple, list) or any(get_origin(arg) in (tuple, list) for arg in get_args(kind))


def no_such_setting(key: str, source: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    return ConfigError(f"{source}: no setting {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))


def from_environment(environ: Mapping[str, str]) -> dict[str, Given]:
    """The settings the environment gives; a list is comma-separated, an empty value is `none`. A PODFLOW_
    variable that names no setting is refused: a typo must not be ignored."""
    fields = setting_fields()
    by_variable = {environment_variable(name): name for name in fields}
    found = {}
    for variable, text in environ.items():
        if not variable.startswith("PODFLOW_") or variable in OTHER_VARIABLES:
            continue
        if variable not in by_variable:
            raise no_such_setting(variable, "environment", list(by_variable))
        name = by_variable[variable]
        value: Any = [part.strip() for part in text.split(",") if part.strip()] if is_list(fields[name]) else text
        found[name] = Given(None if text.strip() == "" else value, variable)
    return found


def config_path(given: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The file to read: the one named by --config or $PODFLOW_CONFIG (which must exist), else ./podflow.toml
    where there is one."""
    named = given or (Path(environ[CONFIG_VARIABLE]) if environ.get(CONFIG_VARIABLE) else None)
    if named is not None:
        if not named.is_file():
            source = "--config" if given else CONFIG_VARIABLE
            raise ConfigError(f"{source}: no file {str(named)!r}")
        return named
    return CONFIG_FILE if CONFIG_FILE.is_file() else None


def from_file(path: Path) -> dict[str, Given]:
    """The settings a TOML file gives, by name (`newest = 3`) or in a table of their group (`[download]`)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    found = {}
    for key, value in data.items():
        if key in GROUP_OF:
            found[key] = Given(value, str(path))
        elif key in Settings.model_fields and isinstance(value, dict):
            for name, inner in value.items():
                if GROUP_OF.get(name) != key:
                    members = [n for n, group in GROUP_OF.items() if group == key]
                    raise no_such_setting(name, f"{path} [{key}]", members)
                found[name] = Given(inner, f"{path} [{key}]")
        else:
            raise no_such_setting(key, str(path), list(GROUP_OF) + list(Settings.model_fields))
    return found


def layered(flags: Mapping[str, Any], environ: Mapping[str, str], config: Path | None) -> dict[str, Given]:
    """Every setting given anywhere, the first source of flag, environment, file winning."""
    path = config_path(config, environ)
    from_flags = {name: Given(value, option_names(name)[0]) for name, value in flags.items()}
    return (from_file(path) if path else {}) | from_environment(environ) | from_flags


def settings_from(given: Mapping[str, Given]) -> Settings:
    """The Settings the sources give; one ConfigError naming each bad value's source and key."""
    try:
        return Settings.of(**{name: value.value for name, value in given.items()})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][1]) if len(error["loc"]) > 1 else str(error["loc"][0])
            key = ".".join(map(str, error["loc"][1:] or error["loc"]))  # `allowed_networks.0`
            source = given[name].source if name in given else DEFAULT
            if source.startswith("--"):
                problems.append(f"{source}: {error['msg']}")
            elif source.startswith("PODFLOW_"):
                problems.append(f"{source} (environment): {error['msg']}")
            else:
                problems.append(f"{source}: {key}: {error['msg']}")
        raise ConfigError("; ".join(problems)) from None


def command_settings(flags: Mapping[str, Any], config: Path | None) -> tuple[Settings, dict[str, Given]]:
    """A command's Settings from its flags, the environment and the file, and where each value came from."""
    given = layered(flags, os.environ, config)
    return settings_from(given), given


def toml_value(field: FieldInfo, value: Any) -> str:
    """A value as TOML that reads back to the same setting: units as text, lists as arrays."""
    if isinstance(value, tuple | list):
        return "[" + ", ".join(json.dumps(str(item)) for item in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, datetime):
        return value.isoformat()
    if unit_of(field) is not None:
        return json.dumps(human(field, value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))


def shown_value(name: str, value: Any) -> Any:
    """A value with any credential masked."""
    return redact_credentials(value) if name in URL_SETTINGS and isinstance(value, str) else value


def settings_toml(settings: Settings, given: Mapping[str, Given]) -> str:
    """`podflow config show`: every effective setting as podflow.toml would hold it, each with its source."""
    lines = [
        "# Every setting as this command would use it, and where each comes from (flag > environment > file >",
        "# default). Valid TOML: a copy of it is a podflow.toml.",
    ]
    fields = setting_fields()
    for group in Settings.model_fields:
        lines += ["", f"[{group}]"]
        for name, group_of in GROUP_OF.items():
            if group_of != group:
                continue
            value, source = shown_value(name, settings.get(name)), given[name].source if name in given else DEFAULT
            line = f"{name} = {toml_value(fields[name], value)}" if value is not None else f"# {name} =  (none)"
            lines.append(f"{line:<58} # {source}")
    key = os.environ.get("OPENAI_API_KEY")
    shown = f"set, ending {key[-4:]!r}" if key and len(key) > 12 else ("set" if key else "not set")
    lines += ["", f"# OPENAI_API_KEY (environment): {shown}"]
    return "\n".join(lines) + "\n"


def commented_config() -> str:
    """`podflow config init`: a podflow.toml naming every setting with its description, each line commented out at
    its default, so the file changes nothing until a line is uncommented."""
    lines = [
        "# podflow's settings. Uncomment a line to change it. A flag or a PODFLOW_<NAME> environment variable",
        "# overrides this file (`podflow config show` prints what is in effect and from where).",
    ]
    fields = setting_fields()
    for group, info in Settings.model_fields.items():
        lines += ["", f"# {info.annotation.__doc__.splitlines()[0]}", f"[{group}]"]  # type: ignore[union-attr]
        for name, group_of in GROUP_OF.items():
            if group_of != group:
                continue
            field = fields[name]
            lines.append("")
            lines += [f"# {line}" for line in textwrap.wrap(field.description or "", 114)]
            lines.append(
                f"# {name} = {toml_value(field, field.default)}"
                if field.default is not None
                else f"# {name} =  (none by default)"
            )
    return "\n".join(lines) + "\n"
