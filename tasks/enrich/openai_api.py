"""enrich=openai: a summary, topics, chapters, hosts and guests from a chat model (OpenAI, or any server that
speaks its chat completions API).

The model gets the transcript as `[start] text` lines, one per segment, and answers JSON that follows a pydantic
schema (a strict `json_schema` response format, tasks/enrich/openai_chat.py), validated here again. A transcript
longer than `part_tokens` is sent in parts, each described by its own request (`openai_requests` at once), and one
last request combines the parts' descriptions.
"""

from __future__ import annotations

import contextvars
import math
import re
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from tasks.enrich.openai_chat import DESCRIPTION_CHARS, Answer, ChatModel
from tasks.models import Chapter, Enrichment, Episode, Feed, Segment, Settings, TokenUsage, Transcript

PART_TOKENS = 8_000  # transcript tokens per request: leaves room in an 8k-16k context self-hosted model too
BYTES_PER_TOKEN = 4  # about right for English; UTF-8's longer letters count more where tokens are shorter

INSTRUCTIONS = """You describe podcast episodes for a catalogue. The user gives the podcast, the episode and its \
transcript as lines `[start] text`, where start is the second the line begins. Answer in the transcript's language:
- summary: what the episode is about, in 3 to 5 sentences;
- topics: 3 to 8 short noun phrases;
- chapters: where the conversation turns to a new subject (no more than one every few minutes); each start copied \
exactly from a `[start]` mark of the transcript, the first chapter at its first line, with a short title;
- hosts and guests: the names of the people who speak, as the transcript or the episode description gives them; \
none when they are not named."""
PART_NOTE = "This is part {number} of {count} of the transcript: describe this part only."
COMBINE_INSTRUCTIONS = """You describe podcast episodes for a catalogue. The user gives the podcast, the episode and \
descriptions of the consecutive parts of its transcript. Combine them into one description of the whole episode, in \
the transcript's language: one summary of 3 to 5 sentences, 3 to 8 topics, the chapters (chosen and merged from the \
parts' chapters, each start copied exactly from one of them, no more than one every few minutes), the hosts and the \
guests."""


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


def split_parts(segments: Sequence[Segment], part_tokens: int) -> list[list[Segment]]:
    """Consecutive runs of segments of about `part_tokens` each (a longer segment alone is a part of its own)."""
    parts: list[list[Segment]] = [[]]
    used = 0
    for segment in segments:
        cost = estimate_tokens(_line(segment))
        if parts[-1] and used + cost > part_tokens:
            parts.append([])
            used = 0
        parts[-1].append(segment)
        used += cost
    return [part for part in parts if part]


def _line(segment: Segment) -> str:
    return f"[{segment.start:.1f}] {segment.text.strip()}"


def _names(items: Sequence[str]) -> tuple[str, ...]:
    """Stripped, non-empty, each once (ignoring case)."""
    seen: dict[str, str] = {}
    for item in (item.strip() for item in items):
        if item:
            seen.setdefault(item.casefold(), item)
    return tuple(seen.values())


def _context(episode: Episode, feed: Feed) -> str:
    description = re.sub(r"<[^>]+>", " ", episode.description)
    description = re.sub(r"\s+", " ", description).strip()[:DESCRIPTION_CHARS]
    lines = [f"Podcast: {feed.title}" + (f" (by {feed.author})" if feed.author else ""), f"Episode: {episode.title}"]
    return "\n".join(lines + ([f"Episode description: {description}"] if description else []))


def _part_description(number: int, part: list[Segment], answer: Answer, chapters: tuple[Chapter, ...]) -> str:
    lines = [f"Part {number}, [{part[0].start:.1f}] to [{part[-1].end:.1f}]:", f"Summary: {answer.summary.strip()}"]
    lines.append(f"Topics: {'; '.join(_names(answer.topics))}")
    lines += ["Chapters:"] + [f"[{chapter.start:.1f}] {chapter.title}" for chapter in chapters]
    lines += [f"Hosts: {'; '.join(_names(answer.hosts))}", f"Guests: {'; '.join(_names(answer.guests))}"]
    return "\n".join(lines)


def openai_enrichment(
    transcript: Transcript,
    episode: Episode,
    feed: Feed,
    settings: Settings,
    on_retry: Callable[[str], None] = lambda message: None,
    part_tokens: int = PART_TOKENS,
) -> Enrichment:
    """Summary, topics, chapters at segment starts, hosts and guests from the settings' chat model.

    Raises EnrichmentError when the API refuses the request (401, 400, ...), keeps failing (429, 5xx, no
    connection, `openai_attempts` times) or gives no valid answer in `openai_chat.ANSWER_ATTEMPTS` tries;
    `on_retry` hears of each retry. A transcript of more than `part_tokens` (estimated) is described in parts,
    then combined. The API key appears in no message.
    """
    segments = [segment for segment in transcript.segments if segment.text.strip()]
    if not segments:
        return Enrichment(method="openai", model=settings.metadata.enrich_model, parts=0, usage=TokenUsage())
    context = _context(episode, feed)
    parts = split_parts(segments, part_tokens)
    chat = ChatModel(settings, on_retry)

    def describe(number: int) -> tuple[Answer, tuple[Chapter, ...]]:
        part = parts[number - 1]
        note = f"\n{PART_NOTE.format(number=number, count=len(parts))}" if len(parts) > 1 else ""
        lines = "\n".join(_line(segment) for segment in part)
        return chat.ask(INSTRUCTIONS, f"{context}{note}\n\nTranscript:\n{lines}", [s.start for s in part])

    try:
        if len(parts) == 1:
            answer, chapters = describe(1)
        else:
            with ThreadPoolExecutor(min(settings.openai.openai_requests, len(parts)), "podflow-enrich") as pool:
                # Each part in a copy of this context: Prefect's settings, client and run context reach its requests.
                futures = [
                    pool.submit(contextvars.copy_context().run, describe, number) for number in range(1, len(parts) + 1)
                ]
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                if failed := next((future.exception() for future in done if future.exception()), None):
                    chat.stopped.set()  # the first failure stops the parts not yet sent, and the others' retries
                    for future in futures:
                        future.cancel()
                    raise failed
                described = [future.result() for future in futures]
            descriptions = "\n\n".join(
                _part_description(number, part, *result)
                for number, (part, result) in enumerate(zip(parts, described), 1)
            )
            starts = [chapter.start for _, chapters in described for chapter in chapters]
            answer, chapters = chat.ask(COMBINE_INSTRUCTIONS, f"{context}\n\nParts:\n{descriptions}", starts)
    finally:
        chat.close()
    return Enrichment(
        method="openai",
        model=", ".join(chat.models) or settings.metadata.enrich_model,
        summary=answer.summary.strip(),
        topics=_names(answer.topics),
        chapters=chapters,
        hosts=_names(answer.hosts),
        guests=_names(answer.guests),
        parts=len(parts),
        usage=chat.usage,
    )
