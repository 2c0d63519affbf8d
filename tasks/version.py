"""The version of podflow that runs: in metadata.json, `podflow --version` and the default User-Agent."""

from __future__ import annotations

import functools
import importlib.metadata
import tomllib
from pathlib import Path


@functools.cache
def podflow_version() -> str:
    """The version of the podflow installed; where it runs from a checkout that is not, its pyproject.toml's."""
    try:
        return importlib.metadata.version("podflow")
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        with open(Path(__file__).parents[1] / "pyproject.toml", "rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"
