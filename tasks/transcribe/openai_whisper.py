"""openai-whisper (PyTorch), the design card's engine.

One model object must never serve two transcriptions at once: each decode installs kv-cache hooks on the shared
modules, and two threads on one model produced garbage text and `cannot reshape tensor of 0 elements`. So every
concurrent transcription checks a model out of the process's pool, which grows to the number of concurrent callers.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import whisper
from whisper.model import ModelDimensions, Whisper

from tasks.models import Segment, Settings, Word
from tasks.transcribe.base import Detected, SampleBackend, threads_per_worker, torch_device
from tasks.transcribe.bundled import bundled_model, whisper_checkpoint_path


def load_model(model: str, device: str) -> Whisper:
    """A bundled model (from its converted checkpoint, with its alignment heads), else what openai-whisper loads
    by name (downloading where a network exists) or from a checkpoint file."""
    bundled = bundled_model(model)
    if bundled is None:
        return whisper.load_model(model, device=device)
    checkpoint = torch.load(whisper_checkpoint_path(bundled), map_location=device, weights_only=True)
    loaded = Whisper(ModelDimensions(**checkpoint["dims"]))
    loaded.load_state_dict(checkpoint["model_state_dict"])
    if checkpoint["alignment_heads"]:
        loaded.set_alignment_heads(checkpoint["alignment_heads"])
    return loaded.to(device)


class WhisperBackend(SampleBackend):
    def __init__(self, settings: Settings, at_once: int):
        super().__init__(settings, at_once)
        self.device = torch_device(settings)
        torch.set_num_threads(threads_per_worker(at_once))
        self._idle: queue.SimpleQueue[Whisper] = queue.SimpleQueue()
        self._idle.put(load_model(settings.transcribe.model, self.device))  # fail on a bad model now, not mid-run

    @contextmanager
    def _checked_out(self) -> Iterator[Whisper]:
        try:
            model = self._idle.get_nowait()
        except queue.Empty:
            model = load_model(self.model_name, self.device)
        try:
            yield model
        finally:
            self._idle.put(model)

    def segments(
        self, samples: np.ndarray, settings: Settings, language: str | None, prompt: str | None
    ) -> tuple[Detected, Iterator[Segment]]:
        with self._checked_out() as model:
            detected = Detected(language, None)
            if not model.is_multilingual:
                detected = Detected("en", None)
            elif language is None:
                mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(samples), model.dims.n_mels).to(self.device)
                _, probabilities = model.detect_language(mel)
                language = max(probabilities, key=probabilities.get)
                detected = Detected(language, round(float(probabilities[language]), 4))
            result = model.transcribe(
                samples,
                language=detected.language,
                beam_size=settings.transcribe.beam_size,
                word_timestamps=settings.transcribe.word_timestamps,
                fp16=self.device == "cuda",
                initial_prompt=prompt,
                verbose=None,
            )
        # openai-whisper decodes the whole file before it returns; there is nothing to stream.
        return detected, iter(
            [
                Segment(
                    start=max(0.0, float(s["start"])),
                    end=max(0.0, float(s["end"])),
                    text=s["text"].strip(),
                    words=tuple(
                        Word(
                            start=float(w["start"]),
                            end=float(w["end"]),
                            text=w["word"].strip(),
                            probability=round(float(w["probability"]), 4),
                        )
                        for w in s.get("words", ())
                    ),
                )
                for s in result["segments"]
            ]
        )
