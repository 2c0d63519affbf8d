"""What parsing a stranger's document in a child process costs, and what the parse limits do to documents built
to cost more than they weigh.

Ordinary documents are parsed both ways, in this process and through tasks/isolation.py, rounds interleaved; the
hostile ones only isolated, as podflow parses them. "kept" is the peak of what this process allocated (tracemalloc):
what the document left here, its parse's memory being the child's (measured on a second call: tracemalloc
slows allocation too much to time under).
Run: `.venv/bin/python bench/parsing.py [--rounds 20]`.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tasks.errors import FeedError, PodflowError, TranscriptionError
from tasks.feed_parse import parse_page
from tasks.isolation import parse_isolated
from tasks.models import Settings
from tasks.redaction import redact_urls
from tasks.transcribe.published_parse import parse_published

DEMO_FEED = (Path(__file__).parents[1] / "flows" / "demo" / "feed.xml").read_bytes()
ITEM = (
    "<item><title>Episode {n}: a conversation about things</title><guid>https://example.org/ep/{n}</guid>"
    "<pubDate>Mon, 02 Nov 2026 10:00:00 +0000</pubDate><enclosure url='https://cdn.example.org/ep{n}.mp3' "
    "type='audio/mpeg' length='12345678'/><description>In this episode we talk about many things, with a guest, "
    "for an hour, and more text here to fill a line or two of show notes.</description></item>"
)


def feed_of(items: list[str]) -> bytes:
    return (
        "<?xml version='1.0'?><rss version='2.0'><channel><title>Big</title>" + "".join(items) + "</channel></rss>"
    ).encode()


def timed(call: Callable[[], Any]) -> tuple[float, int, str]:
    """Seconds; the peak this process allocated, from a second call under tracemalloc (which slows allocation
    too much to time under); and what came of it."""
    started = time.perf_counter()
    what = outcome(call)
    seconds = time.perf_counter() - started
    tracemalloc.start()
    outcome(call)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak, what


def outcome(call: Callable[[], Any]) -> str:
    try:
        result = call()
    except PodflowError as exc:
        return f"refused: {str(exc)[-60:]}"
    return f"{len(result.episodes):,} episodes" if hasattr(result, "episodes") else "parsed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds of the small feed, each way")
    args = parser.parse_args()
    settings = Settings()
    url = "https://feeds.example.org/feed.xml"

    def page(body: bytes, isolated: bool, limits: Settings = settings) -> Callable[[], Any]:
        parse_args = (body, url, url, {}, limits.documents.max_feed_episodes)
        if isolated:
            return lambda: parse_isolated(parse_page, parse_args, limits, url, FeedError)
        return lambda: parse_page(*parse_args)

    table = Table(title="Parsing in a child process (tasks/isolation.py)")
    for column in ("document", "parsed", "seconds", "vs in this process", "kept here", "outcome"):
        table.add_column(column, justify="left" if column in ("document", "parsed", "outcome") else "right")

    page(DEMO_FEED, True)()  # the fork server starts once per process: not counted
    inline, isolated = [], []
    for _ in range(args.rounds):
        for parse, seconds in ((page(DEMO_FEED, False), inline), (page(DEMO_FEED, True), isolated)):
            started = time.perf_counter()
            parse()
            seconds.append(time.perf_counter() - started)
    small = statistics.median(inline)
    table.add_row("demo feed, 4 items", "here", f"{small * 1000:.1f} ms", "1.00", "", "median")
    table.add_row(
        "demo feed, 4 items",
        "child",
        f"{statistics.median(isolated) * 1000:.1f} ms",
        f"{statistics.median(isolated) / small:.2f}",
        "",
        "median",
    )

    big = feed_of([ITEM.format(n=n) for n in range(40_000)])
    here = timed(page(big, False))
    child = timed(page(big, True))
    name = f"40,000 items, {len(big) / 2**20:.1f} MiB"
    table.add_row(name, "here", f"{here[0]:.1f}", "1.00", f"{here[1] / 2**20:.0f} MiB", here[2])
    table.add_row(
        name, "child", f"{child[0]:.1f}", f"{child[0] / here[0]:.2f}", f"{child[1] / 2**20:.0f} MiB", child[2]
    )

    tiny = feed_of([f"<item><guid>{n}</guid></item>" for n in range(800_000)])
    cut = timed(page(tiny, True))
    table.add_row(
        f"800,000 tiny items, {len(tiny) / 2**20:.0f} MiB",
        "child",
        f"{cut[0]:.1f}",
        "",
        f"{cut[1] / 2**20:.0f} MiB",
        cut[2],
    )

    quick = settings.but(max_parse_s=10.0)
    attributes = feed_of(["<item><title " + " ".join(f'a{n}="x"' for n in range(100_000)) + ">t</title></item>"])
    slow = timed(page(attributes, True, quick))
    table.add_row(
        "100,000 attributes on one element (1 MB)",
        "child",
        f"{slow[0]:.1f}",
        "",
        f"{slow[1] / 2**20:.0f} MiB",
        f"max_parse_s=10: {slow[2]}",
    )

    def transcript(body: bytes, media_type: str, limits: Settings) -> Callable[[], Any]:
        arguments = (body, media_type, 3600.0, limits.documents.max_transcript_segments)
        return lambda: parse_isolated(parse_published, arguments, limits, "the transcript", TranscriptionError)

    html = timed(transcript(b"</" * 2**19, "text/html", quick))
    table.add_row(
        "HTML transcript of `</` (1 MiB)",
        "child",
        f"{html[0]:.1f}",
        "",
        f"{html[1] / 2**20:.0f} MiB",
        f"max_parse_s=10: {html[2]}",
    )
    plain = timed(transcript(b"a\n\n" * (4 * 2**20 // 3), "text/plain", settings))
    table.add_row(
        "text transcript of `a\\n\\n` (4 MiB)", "child", f"{plain[0]:.1f}", "", f"{plain[1] / 2**20:.0f} MiB", plain[2]
    )

    masked = timed(lambda: redact_urls("x?" + ";" * 300_000))
    table.add_row(
        "masking `x?` and 300,000 `;`", "here", f"{masked[0]:.3f}", "", f"{masked[1] / 2**20:.1f} MiB", "masked"
    )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
