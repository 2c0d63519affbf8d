"""Word error rate, for checking real transcriptions against the scripts the demo clips were spoken from; a short
clip's samples as one array."""

import math
import re
from pathlib import Path

import numpy as np

from tasks import audio as audio_codec


def decoded(path: Path, max_duration_s: float = math.inf) -> np.ndarray:
    """A short clip, decoded whole (podflow itself streams an episode, never holding all of it)."""
    return np.concatenate(list(audio_codec.stream(path, max_duration_s)))


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower().replace(",", ""))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference length."""
    ref, hyp = words(reference), words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, 1):
        current = [i]
        for j, hyp_word in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1] / max(1, len(ref))
