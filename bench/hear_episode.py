"""Hear one audio file in this process, as podflow's transcribe stage hears it or as faster-whisper's own
`BatchedInferencePipeline` does, and print what was heard and what it cost as one JSON document on stdout.

`bench/long.py --vs-engine` runs it in a fresh process per hearing, with PYTHONPATH naming the checkout whose `tasks`
it imports (this one, or a --baseline). Both ways load the model the same way (podflow's FasterWhisperBackend: the
bundled model, int8 on the CPU, the cores' threads) and hear with the same beam and batch size (the settings'
defaults); the engine decodes the file itself and finds speech with its own VAD.
Run: `python bench/hear_episode.py {podflow,podflow-greedy,engine,engine-words} AUDIO [--model bundled:tiny.en]`.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import tasks  # noqa: F401  (first: it sets OpenMP's wait policy)
from tasks.files import sha256_of
from tasks.models import AudioFile, Episode, Settings
from tasks.transcribe.faster_whisper import FasterWhisperBackend

WAYS = ("podflow", "podflow-greedy", "engine", "engine-words")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "way",
        choices=WAYS,
        help="podflow's stage (greedy_first off or on), or the engine's pipeline without or with words",
    )
    parser.add_argument("audio", type=Path)
    parser.add_argument("--model", default="bundled:tiny.en")
    args = parser.parse_args()
    greedy = {"greedy_first": True} if args.way == "podflow-greedy" else {}  # a baseline may know no such setting
    settings = Settings.model_validate({"transcribe": {"model": args.model, **greedy}})
    backend = FasterWhisperBackend(settings, 1)
    started, cpu_started = time.perf_counter(), time.process_time()
    if args.way.startswith("podflow"):
        audio = AudioFile(
            episode_id="bench",
            path=args.audio,
            source_url="http://127.0.0.1/bench.mp3",
            bytes=args.audio.stat().st_size,
            sha256=sha256_of(args.audio),
        )
        episode = Episode(episode_id="bench", title="bench")
        transcript = backend.transcribe(audio, episode, settings, lambda event: None)
        segments = [(s.start, s.end, s.text) for s in transcript.segments]
    else:
        from faster_whisper import BatchedInferencePipeline

        produced, _ = BatchedInferencePipeline(backend.model).transcribe(
            str(args.audio),
            language="en" if args.model.endswith(".en") else None,
            beam_size=settings.transcribe.beam_size,
            batch_size=settings.transcribe.batch_size,
            word_timestamps=args.way == "engine-words",
        )
        segments = [(s.start, s.end, s.text.strip()) for s in produced]
    json.dump(
        {
            "wall_s": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu_started,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "segments": segments,
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
