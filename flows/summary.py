"""The markdown summary of a run that the Prefect UI shows on its flow run page, and the plain words of a failure
that it and the CLI give."""

from __future__ import annotations

import re

from tasks import errors
from tasks.http import CHAIN, without_chain
from tasks.models import EpisodeOutcome, RunReport
from tasks.stages import STAGES

# Everything markdown could read as markup or HTML in a title or an error a feed controls.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~])")
_LINK_FORMING = re.compile(r"([\]<:.])")


def markdown_text(text: str) -> str:
    """`text` shown as written: on one line, every markdown and HTML character escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def table_text(text: str) -> str:
    """`text` for a cell of a table artifact, on one line and inert: Prefect's V1 UI renders a cell as markdown, its
    V2 UI as plain text, so no backslash escape would read right in both. Instead a zero-width space follows each
    character that could close a link's text, open an HTML tag or an autolink, or join a bare URL (`] < : .`): no
    link, image or tag can form, and both UIs show the text as written."""
    return _LINK_FORMING.sub("\\1\u200b", " ".join(text.split()))


# `FeedError: `: how a report records an expected failure, its kind first.
_KIND = re.compile(r"([A-Z]\w*): ")


def _expected_kinds(kind: type[errors.PodflowError] = errors.PodflowError) -> set[str]:
    return {kind.__name__}.union(*(_expected_kinds(sub) for sub in kind.__subclasses__()))


EXPECTED_KINDS = frozenset(_expected_kinds())


def plain_error(error: str, verbose: bool = False) -> str:
    """A failure as a report records it (`FeedError: <what failed>: <why> [<chain of errors>]`) in a user's words:
    the message alone. `verbose`: the chain too, led by the failure's own kind (`[FeedError ← ConnectionError ←
    …]`). An unexpected error keeps its kind, which is all it says (`KeyError: 'x'`)."""
    kind = _KIND.match(error)
    if kind is None or kind[1] not in EXPECTED_KINDS:
        return error if verbose else without_chain(error)
    message = error[kind.end() :]
    if not verbose:
        return without_chain(message)
    chains = list(CHAIN.finditer(message))
    if chains and chains[-1].end() == len(message):
        return f"{message[: chains[-1].start()]} [{kind[1]} ← {chains[-1][1]}]"
    return f"{message} [{kind[1]}]"


def failed_stage(episode: EpisodeOutcome) -> str | None:
    return next((stage for stage in STAGES if episode.stages.get(stage) == "failed"), None)


def episode_failure(episode: EpisodeOutcome, verbose: bool = False) -> str:
    """A failed episode in a line: `<title> — <stage>: <why>` (a title may hold colons of its own)."""
    stage = failed_stage(episode)
    return f"{episode.title} — {f'{stage}: ' if stage else ''}{plain_error(episode.error or 'failed', verbose)}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "none"


def summary_markdown(report: RunReport) -> str:
    wall_s = (report.ended - report.started).total_seconds()
    episodes = report.episodes
    audio_s = sum(e.audio_duration_s or 0.0 for e in episodes)
    downloaded = sum(e.audio_bytes or 0 for e in episodes)
    processed = report.count("complete")
    feed_counts = {
        status: sum(1 for f in report.feeds if f.status == status) for status in ("fetched", "not modified", "failed")
    }
    episode_counts = {status: report.count(status) for status in ("complete", "already complete", "failed", "skipped")}
    rate = f"{processed / wall_s * 3600:.1f} episodes an hour" if wall_s > 0 else "-"
    real_time = f", {audio_s / wall_s:.1f}× real time" if wall_s > 0 and audio_s else ""
    lines = [
        f"## podflow: {len(report.feeds)} feeds, {len(episodes)} episodes in {_duration(wall_s)}",
        "",
        "| | |",
        "|---|---|",
        f"| feeds | {_counts(feed_counts)} |",
        f"| episodes | {_counts(episode_counts)} |",
        f"| downloaded | {downloaded / 1e6:,.1f} MB |",
        f"| audio transcribed | {audio_s / 3600:.2f} h |",
        f"| throughput | {rate}{real_time} |",
    ]
    failures = (
        [f"- {markdown_text(plain_error(error))}" for error in report.source_errors]
        + [
            f"- feed {markdown_text(feed.feed_title)}: {markdown_text(plain_error(feed.error or ''))}"
            for feed in report.feeds
            if feed.status == "failed"
        ]
        + [
            f"- {markdown_text(feed.feed_title)} / {markdown_text(episode_failure(e))}"
            for feed in report.feeds
            for e in feed.episodes
            if e.status == "failed"
        ]
    )
    if failures:
        lines += ["", f"### Failures ({len(failures)})", "", *failures]
    return "\n".join(lines) + "\n"
