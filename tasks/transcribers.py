"""The transcribers podflow knows: the names `Settings.transcriber` takes, what each is, and where its code lives.

Adding one is a module in tasks/transcribe/ and a line in BACKENDS (README, "Add a transcriber"). The settings'
choices, the CLI's help and the Prefect UI form all read BACKENDS; the transcribe stage loads the chosen one from it.
A backend's module is imported only when it is used, so choosing faster-whisper never imports torch. This module
imports nothing of podflow's at import time, so tasks/models.py can read it without importing the transcribe stage.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BackendInfo:
    """One transcriber: a line of description for `--help` and the settings form, and its class as
    `"package.module:Class"`, constructed with the Settings (see tasks/transcribe/base.py)."""

    description: str
    target: str
    processes_on_cuda: bool = False  # transcribe_pool auto: run the workers as processes when its model is on CUDA
    install: str | None = None  # how to install what it needs, where the default install lacks it

    def load(self) -> Any:
        """The backend's class, its module imported now; a TranscriptionError saying how to install what it needs
        where that is missing."""
        module, _, name = self.target.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except ModuleNotFoundError as exc:
            if self.install is None:
                raise
            from tasks.errors import TranscriptionError  # here, not above: this module imports nothing of podflow's

            raise TranscriptionError(
                f"{self.description} is not installed ({exc.name} is missing): {self.install}"
            ) from None


BACKENDS: dict[str, BackendInfo] = {
    "faster-whisper": BackendInfo("CTranslate2", "tasks.transcribe.faster_whisper:FasterWhisperBackend"),
    # Threads sharing one interpreter made throughput worse as they were added on CUDA (measured in issue 3).
    "whisper": BackendInfo(
        "openai-whisper, PyTorch",
        "tasks.transcribe.openai_whisper:WhisperBackend",
        processes_on_cuda=True,
        install="pip install 'podflow[whisper]' && pip install --no-deps openai-whisper==20250625",
    ),
    "openai": BackendInfo(
        "the OpenAI audio API or a compatible server: see openai_*", "tasks.transcribe.openai_api:OpenAIBackend"
    ),
    "published": BackendInfo(
        "only the transcripts the feed links, never Whisper", "tasks.transcribe.published:PublishedBackend"
    ),
}
DEFAULT_BACKEND = "faster-whisper"


def described_backends() -> str:
    """Every registered transcriber with its description, as the `transcriber` setting explains them."""
    return "; ".join(f"{name} ({info.description})" for name, info in BACKENDS.items()) + "."


def registered(name: str) -> str:
    """`name`, when a transcriber of that name is registered; ValueError naming those that are, when not."""
    if name not in BACKENDS:
        raise ValueError(f"no transcriber {name!r}; registered: {', '.join(BACKENDS)}")
    return name
