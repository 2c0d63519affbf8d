"""The settings reference page of the docs (docs/reference/settings.md), generated from the Settings model:
`python -m flows.settings_reference docs/reference/settings.md` (`make docs` runs it; a test fails when the page
is out of date)."""

from __future__ import annotations

import sys
from pathlib import Path

from flows.config import CONFIG_FILE, environment_variable, option_names, setting_fields
from tasks.files import atomic_write_text
from tasks.models import Settings
from tasks.models.settings import GROUP_OF
from tasks.models.units import human


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_reference() -> str:
    fields = setting_fields()
    lines = [
        "# Settings reference",
        "",
        "<!-- Generated from tasks/models/settings.py by `make docs`: edit the model, not this page. -->",
        "",
        "Every setting has one name. On the command line it is the flag shown; in the environment, the variable "
        f"shown; in `{CONFIG_FILE}`, the name itself, at the top level or in its group's table. A flag beats the "
        "environment, which beats the file, which beats the default. In a deployment's parameters, settings sit in "
        "their groups (`settings.download.download_workers`). Sizes and times take units: `20 MiB`, `2 GiB`, "
        "`90 s`, `20 min`, `3 h`.",
    ]
    for group, info in Settings.model_fields.items():
        doc = (info.annotation.__doc__ or "").strip().splitlines()[0]  # type: ignore[union-attr]
        lines += ["", f"## `{group}`", "", doc, "", "| Setting | Flag | Environment | Default | What it does |"]
        lines.append("|---|---|---|---|---|")
        for name in (name for name, of in GROUP_OF.items() if of == group):
            field = fields[name]
            flags = ", ".join(f"`{flag}`" for flag in option_names(name))
            lines.append(
                f"| `{name}` | {flags} | `{environment_variable(name)}` | `{cell(human(field, field.default))}` "
                f"| {cell(field.description or '')} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    atomic_write_text(Path(sys.argv[1]), settings_reference())
