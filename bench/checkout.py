"""The checkouts a bench compares: this one, and a `--baseline` one (a `git worktree` of an older commit)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Checkout:
    """A source tree whose `flows` and `tasks` a run imports."""

    name: str  # "this" or "baseline"
    path: Path

    def describe(self) -> str:
        """The commit, marked -dirty when the tree has changes, or the path when it is no git checkout."""
        described = subprocess.run(
            ["git", "-C", str(self.path), "describe", "--always", "--dirty"], capture_output=True, text=True
        )
        return described.stdout.strip() if described.returncode == 0 else str(self.path)
