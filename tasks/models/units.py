"""Sizes and durations as people write them: `20 MiB`, `90 s`, `3 h`.

A setting typed `ByteSize`, `Seconds` or `Delay` takes either a plain number (bytes, seconds: what the Prefect UI
form and a deployment's JSON send) or such a text (a flag, an environment variable, podflow.toml); `--help`,
`podflow config show` and the settings reference print it the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic.fields import FieldInfo

BYTE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
SECOND_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "h": 3600, "d": 86400}
AMOUNT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*")


@dataclass(frozen=True)
class Unit:
    """What a setting's number counts, kept in its type so that help and `config show` can print it."""

    name: str  # "bytes" or "seconds"


def amount(text: str, units: Mapping[str, float], example: str) -> float:
    """`text` as a number of the smallest unit; ValueError with an example of what is understood."""
    match = AMOUNT.fullmatch(text)
    if not match or (match[2] and match[2].lower() not in units):
        raise ValueError(f"{text!r} is not understood: write a number or e.g. {example}")
    return float(match[1]) * units.get(match[2].lower(), 1)


def parse_bytes(value: Any) -> Any:
    """`"20 MiB"` -> 20971520; numbers and anything else pass on to the type's own validation."""
    return round(amount(value, BYTE_UNITS, "20 MiB, 2 GiB")) if isinstance(value, str) else value


def parse_seconds(value: Any) -> Any:
    """`"3 h"` -> 10800.0; numbers and anything else pass on to the type's own validation."""
    return amount(value, SECOND_UNITS, "30 s, 20 min, 3 h") if isinstance(value, str) else value


BYTES, SECONDS = Unit("bytes"), Unit("seconds")
ByteSize = Annotated[int, Field(gt=0), BeforeValidator(parse_bytes), BYTES]
Seconds = Annotated[float, Field(gt=0), BeforeValidator(parse_seconds), SECONDS]
Delay = Annotated[float, Field(ge=0), BeforeValidator(parse_seconds), SECONDS]  # 0: no wait


def number(value: float) -> str:
    """A number without a trailing `.0` or float noise: 1.5, 3, 0.25."""
    return f"{value:.4g}" if value != int(value) else str(int(value))


def human_bytes(size: int) -> str:
    """2147483648 -> `2 GiB`: the largest binary unit the size reaches."""
    unit, factor = next(
        ((name, factor) for name, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)) if size >= factor),
        ("B", 1),
    )
    return f"{number(size / factor)} {unit}"


def human_seconds(seconds: float) -> str:
    """10800 -> `3 h`, 1800 -> `30 min`, 30 -> `30 s`: the largest unit that divides it evenly, else seconds."""
    for unit, factor in (("h", 3600), ("min", 60)):
        if seconds >= factor and seconds % factor == 0:
            return f"{number(seconds / factor)} {unit}"
    return f"{number(seconds)} s"


def unit_of(field: FieldInfo) -> Unit | None:
    """The unit a setting's type carries, if any."""
    return next((marker for marker in field.metadata if isinstance(marker, Unit)), None)


def human(field: FieldInfo, value: Any) -> str:
    """A setting's value as a user would type it: units for sizes and times, `none`, lists comma-separated."""
    if value is None or value == ():
        return "none"
    if isinstance(value, tuple | list):
        return ", ".join(map(str, value))
    if isinstance(value, bool):
        return str(value).lower()
    unit = unit_of(field)
    if unit == BYTES:
        return human_bytes(value)
    if unit == SECONDS:
        return human_seconds(value)
    return str(value)
