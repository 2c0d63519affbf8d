"""Prefect stays at the edge: the domain modules import without it; only the `@task` wrappers (and
tasks/prefect_glue.py under them) and flows/ need it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

WITHOUT_PREFECT = [
    "tasks.errors",
    "tasks.models",
    "tasks.redaction",
    "tasks.network",
    "tasks.http",
    "tasks.audio",
    "tasks.files",
    "tasks.store",
    "tasks.selection",
    "tasks.episode_id",
    "tasks.feed_parse",
    "tasks.feed_run",
    "tasks.report",
    "tasks.opml",
    "tasks.openai_client",
    "tasks.stages",
    "tasks.episode_folder",
    "tasks.ledger_db",
    "tasks.events",
    # What flows/cli.py imports before Prefect is configured.
    "flows.cli_display",
    "flows.cli_options",
]


@pytest.mark.integration
def test_the_domain_modules_import_without_prefect() -> None:
    code = f"import sys, {', '.join(WITHOUT_PREFECT)}; sys.exit('prefect' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr or "prefect was imported"
