"""Regenerate the demo feed: speak each script with espeak-ng, encode MP3 with PyAV, write feed.xml.

A developer's tool, run once and committed (`apt-get install espeak-ng`, then `python -m flows.demo.generate`):
podflow, its demo and its tests use the committed files and need no espeak-ng.
"""

from __future__ import annotations

import io
import json
import subprocess
import wave
from email.utils import parsedate_to_datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import av
import numpy as np

from tasks.files import atomic_write_bytes, atomic_write_text

DEMO_DIR = Path(__file__).parent
VOICE, WORDS_PER_MINUTE = "en-us", 150


def speak(text: str) -> tuple[np.ndarray, int]:
    """espeak-ng's WAV output as int16 samples and their rate."""
    wav = subprocess.run(
        ["espeak-ng", "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "--stdout", text], check=True, capture_output=True
    ).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        return np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16), reader.getframerate()


def encode_mp3(samples: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout="mono")
        stream.bit_rate = 48_000
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def feed_xml(episodes: list[dict], sizes: dict[str, int], durations: dict[str, float]) -> str:
    items = "".join(
        f"""
    <item>
      <title>{escape(e["title"])}</title>
      <guid isPermaLink="false">podflow-demo-{e["slug"]}</guid>
      <pubDate>{e["published"]}</pubDate>
      <description>{escape(e["script"][:80])}…</description>
      <enclosure url={quoteattr(e["slug"] + ".mp3")} type="audio/mpeg" length="{sizes[e["slug"]]}"/>
      <itunes:duration>{round(durations[e["slug"]])}</itunes:duration>
      <itunes:episode>{number}</itunes:episode>
    </item>"""
        for number, e in enumerate(episodes, 1)
    )
    newest = parsedate_to_datetime(episodes[-1]["published"]).strftime("%a, %d %b %Y %H:%M:%S GMT")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd">
  <channel>
    <title>The podflow Demo Show</title>
    <link>https://example.org/podflow-demo</link>
    <description>Short spoken episodes for trying podflow end to end, offline.</description>
    <language>en</language>
    <itunes:author>podflow</itunes:author>
    <lastBuildDate>{newest}</lastBuildDate>{items}
  </channel>
</rss>
"""


def main() -> None:
    episodes = json.loads((DEMO_DIR / "episodes.json").read_text())
    sizes, durations = {}, {}
    for episode in episodes:
        samples, rate = speak(episode["script"])
        mp3 = encode_mp3(samples, rate)
        atomic_write_bytes(DEMO_DIR / f"{episode['slug']}.mp3", mp3)
        sizes[episode["slug"]], durations[episode["slug"]] = len(mp3), samples.size / rate
        print(f"{episode['slug']}.mp3: {len(mp3):,} bytes, {samples.size / rate:.1f} s")
    atomic_write_text(DEMO_DIR / "feed.xml", feed_xml(episodes, sizes, durations))


if __name__ == "__main__":
    main()
