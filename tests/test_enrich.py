"""Enriched metadata: local (extractive, no network) and openai, against a real OpenAI-compatible HTTP server on
127.0.0.1 that the real `openai` client talks to."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

from flows.ingest import ingest_feed
from tasks.enrich import local, openai_api, openai_chat
from tasks.enrich.local import local_enrichment
from tasks.enrich.openai_api import openai_enrichment, split_parts
from tasks.enrich.openai_chat import Answer, snap_chapters
from tasks.errors import EnrichmentError, InvalidAnswer
from tasks.ledger_db import LEDGER
from tasks.models import (
    Chapter,
    Enrichment,
    Episode,
    EpisodeMetadata,
    Feed,
    IngestReport,
    Segment,
    Settings,
    Transcript,
)
from tests.conftest import DEMO_DIR, DEMO_EPISODES, LOOPBACK
from tests.feeds import rss, rss_item
from tests.feedserver import FeedServer
from tests.ledgers import read_folder_ledger
from tests.openai_server import CHAT, OpenAIServer, Received, Reply, error

KEY = "sk-test-SECRET-456"
ANSWERING_MODEL = "gpt-4o-mini-2024-07-18"
MARK = re.compile(r"^\[(\d+(?:\.\d+)?)\] (.*)$", re.MULTILINE)


def sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text) if s]


def transcript_of(scripts: list[str], seconds_per_sentence: float = 4.25, language: str | None = "en") -> Transcript:
    """A transcript with one segment per sentence of the scripts, as Whisper would cut them."""
    lines = [line for script in scripts for line in sentences(script)]
    return Transcript(
        episode_id="demo",
        audio_sha256="0" * 64,
        backend="test",
        model="test",
        language=language,
        audio_duration_s=len(lines) * seconds_per_sentence,
        segments=tuple(
            Segment(
                start=round(i * seconds_per_sentence, 3), end=round((i + 1) * seconds_per_sentence, 3), text=" " + line
            )
            for i, line in enumerate(lines)
        ),
    )


EPISODE = Episode(
    episode_id="demo",
    title="The podflow demo, all four episodes",
    description="<p>With your host <b>Ada Lovelace</b> and guest Alan Turing.</p>",
)
FEED = Feed(
    url="https://example.org/feed.xml",
    final_url="https://example.org/feed.xml",
    title="The podflow Demo Show",
    author="podflow",
    fetched_at=datetime(2026, 11, 2, tzinfo=UTC),
)


# local ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("demo", "subject", "related"),
    [
        (DEMO_EPISODES[0], "river", {"water", "sand", "stones", "valleys", "mountains", "sea"}),
        (DEMO_EPISODES[1], "bread", {"flour", "water", "salt", "yeast", "baked", "dough"}),
        (DEMO_EPISODES[2], "stars", {"night", "sailors", "ocean", "city", "lights"}),
        (DEMO_EPISODES[3], "bees", {"flowers", "nectar", "pollen", "plant", "fruit"}),
    ],
    ids=lambda value: getattr(value, "slug", ""),
)
def test_local_summary_comes_from_the_transcript_and_keywords_fit(demo, subject: str, related: set[str]) -> None:
    transcript = transcript_of([demo.script])
    result = local_enrichment(transcript, Episode(episode_id=demo.slug, title=demo.title))

    assert result.method == "local" and result.model is None and result.usage is None
    assert result.summary and all(sentence in sentences(demo.script) for sentence in sentences(result.summary))
    assert result.keywords[0] == subject, result.keywords  # said most, and in the title
    assert len(related & set(result.keywords)) >= 3, result.keywords
    assert not {"the", "and", "episode", "welcome"} & set(result.keywords)
    assert result.topics == result.chapters == result.hosts == result.guests == ()


def test_local_summary_of_a_long_transcript_is_a_few_sentences_spread_over_it() -> None:
    scripts = [demo.script for demo in DEMO_EPISODES]
    transcript = transcript_of(scripts * 50)  # 800 segments, 7,000 words
    started = time.perf_counter()
    result = local_enrichment(transcript, EPISODE)
    assert time.perf_counter() - started < 2.0

    picked = sentences(result.summary)
    assert 2 <= len(picked) <= local.MAX_SUMMARY_SENTENCES
    assert len(set(picked)) == len(picked)  # SumBasic: each pick says something new
    subjects = {word for word in ("river", "bread", "stars", "bees") if word in result.summary.lower()}
    assert len(subjects) >= 2
    assert len(result.keywords) == local.MAX_KEYWORDS


@pytest.mark.parametrize(
    "segments",
    [
        (),
        (Segment(start=0, end=1, text="  "),),
        (Segment(start=0, end=1, text="42 !"),),
    ],
)
def test_local_enrichment_of_an_empty_transcript_is_empty(segments: tuple[Segment, ...]) -> None:
    transcript = transcript_of([]).model_copy(update={"segments": segments})
    result = local_enrichment(transcript, EPISODE)
    assert result.summary == "" and result.keywords == ()


@pytest.mark.parametrize(
    ("language", "text"),
    [
        (
            "de",
            "Heute sprechen wir über Flüsse. Ein Fluss trägt Sand und Steine von den Bergen bis zum Meer. "
            "Über tausende Jahre schneidet das Wasser tiefe Täler in das Land. Der Fluss formt die Landschaft.",
        ),
        ("ja", "今日は川について話します。川は山から海へ砂と石を運びます。何千年もの間に水は深い谷を作ります。"),
        ("ru", "Сегодня мы говорим о реках. Река несёт песок и камни с гор к морю. Вода режет глубокие долины."),
    ],
)
def test_local_enrichment_of_other_languages(language: str, text: str) -> None:
    result = local_enrichment(transcript_of([text], language=language), EPISODE)
    assert result.summary and result.summary in text
    assert result.keywords


def test_local_summary_of_a_transcript_without_punctuation_takes_whole_segments() -> None:
    words = " ".join(sentences(DEMO_EPISODES[0].script)).replace(".", "").replace(",", "").lower().split()
    segments = tuple(
        Segment(start=i * 3.0, end=i * 3.0 + 3, text=" ".join(words[i * 8 : (i + 1) * 8]))
        for i in range(0, (len(words) + 7) // 8)
    )
    transcript = transcript_of([]).model_copy(update={"segments": segments * 4})
    result = local_enrichment(transcript, EPISODE)
    rest = result.summary
    while rest:  # whole segments, one after the other
        rest = next(rest.removeprefix(s.text).lstrip() for s in segments if rest.startswith(s.text))
    assert "river" in result.keywords


# openai: the fake API -----------------------------------------------------------------------------------------------


def completion(
    content: str | dict,
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
    finish_reason: str = "stop",
    delay_s: float = 0.0,
) -> Reply:
    """A chat completion in the API's shape, answering `content` (a dict is sent as its JSON)."""
    text = content if isinstance(content, str) else json.dumps(content)
    return Reply(
        json={
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 1_790_000_000,
            "model": ANSWERING_MODEL,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish_reason,
                    "logprobs": None,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        },
        delay_s=delay_s,
    )


def header(received: Received, name: str) -> str | None:
    return {key.lower(): value for key, value in received.headers.items()}.get(name.lower())


def user_text(received: Received) -> str:
    assert received.json is not None
    return received.json["messages"][1]["content"]


def describing(delay_s: float = 0.0) -> Callable[[Received], Reply]:
    """A model that describes what it is sent: a part as chapters at its first and middle marks, a list of parts'
    descriptions as the chapters they name."""

    def answer(received: Received) -> Reply:
        text = user_text(received)
        marks = MARK.findall(text)
        if "\nParts:\n" in text:
            summaries = re.findall(r"^Summary: (.*)$", text, re.MULTILINE)
            return completion(
                {
                    "summary": "Whole: " + " | ".join(summaries),
                    "topics": ["rivers", "bread"],
                    "chapters": [{"start": float(s), "title": t} for s, t in marks],
                    "hosts": ["Ada Lovelace"],
                    "guests": ["Alan Turing"],
                },
                delay_s=delay_s,
            )
        chosen = [marks[0], marks[len(marks) // 2]] if len(marks) > 2 else marks[:1]
        return completion(
            {
                "summary": f"Part from {marks[0][0]}: {marks[0][1][:30]}",
                "topics": ["Rivers", " rivers ", "", "bread"],
                "chapters": [{"start": float(s), "title": f"About {t.split()[-1]}"} for s, t in reversed(chosen)],
                "hosts": ["Ada Lovelace"],
                "guests": ["Alan Turing", "alan turing"],
            },
            delay_s=delay_s,
        )

    return answer


VALID = {
    "summary": "Four short stories.",
    "topics": ["rivers"],
    "chapters": [{"start": 0.0, "title": "Rivers"}],
    "hosts": [],
    "guests": [],
}


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OpenAIServer() as server:
        server.chat = describing()
        yield server


def openai_settings(api: OpenAIServer, tmp_path: Path, **changes: object) -> Settings:
    return Settings.of(
        output_dir=tmp_path / "out",
        retry_backoff_s=0.01,
        openai_retry_backoff_s=0.01,
        enrich="openai",
        openai_base_url=api.base_url,
        allowed_networks=LOOPBACK,
        **changes,
    )


DEMO_TRANSCRIPT = transcript_of([demo.script for demo in DEMO_EPISODES])


# openai: the function -----------------------------------------------------------------------------------------------


def test_a_schema_valid_answer_becomes_the_enrichment(api: OpenAIServer, tmp_path: Path) -> None:
    settings = openai_settings(api, tmp_path)
    result = openai_enrichment(DEMO_TRANSCRIPT, EPISODE, FEED, settings)

    (request,) = api.requests(CHAT)
    assert header(request, "Authorization") == f"Bearer {KEY}"
    body = request.json or {}
    assert body["model"] == "gpt-4o-mini"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "episode_description", "schema": Answer.model_json_schema(), "strict": True},
    }
    assert body["messages"][0]["role"] == "system"
    sent = user_text(request)
    assert "Podcast: The podflow Demo Show" in sent and "Ada Lovelace" in sent and "<b>" not in sent
    assert "[0.0] Welcome to the podflow demo." in sent and "[4.2] Today we talk about rivers." in sent

    starts = [segment.start for segment in DEMO_TRANSCRIPT.segments]
    assert result.method == "openai" and result.model == ANSWERING_MODEL and result.parts == 1
    assert result.summary == "Part from 0.0: Welcome to the podflow demo."
    assert [c.start for c in result.chapters] == [0.0, starts[len(starts) // 2]]  # in order, at segment starts
    assert result.chapters[1] == Chapter(start=29.75, title="About loaf.")
    assert result.topics == ("Rivers", "bread") and result.guests == ("Alan Turing",)
    assert result.usage is not None and result.usage.model_dump() == {
        "requests": 1,
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
    }


def test_chapter_starts_are_taken_from_the_segments() -> None:
    starts = [0.0, 4.25, 8.5, 12.75]
    answer = Answer.model_validate(
        VALID
        | {
            "chapters": [
                {"start": 12.8, "title": "Bees"},
                {"start": 4.0, "title": "Bread"},
                {"start": 4.3, "title": "Again"},
                {"start": 0, "title": " Rivers "},
            ]
        }
    )
    assert [(c.start, c.title) for c in snap_chapters(answer.chapters, starts)] == [
        (0.0, "Rivers"),
        (4.25, "Bread"),
        (12.75, "Bees"),
    ]
    with pytest.raises(InvalidAnswer, match="starts at 30.0"):
        snap_chapters(Answer.model_validate(VALID | {"chapters": [{"start": 30.0, "title": "Late"}]}).chapters, starts)


def test_a_long_transcript_is_described_in_parts_then_combined(api: OpenAIServer, tmp_path: Path) -> None:
    parts = split_parts(DEMO_TRANSCRIPT.segments, 60)
    assert len(parts) >= 4 and [s for part in parts for s in part] == list(DEMO_TRANSCRIPT.segments)
    api.chat = describing(delay_s=0.2)
    settings = openai_settings(api, tmp_path, openai_requests=2)

    result = openai_enrichment(DEMO_TRANSCRIPT, EPISODE, FEED, settings, part_tokens=60)

    requests = api.requests(CHAT)
    assert len(requests) == len(parts) + 1
    assert api.peak_in_flight(CHAT) == 2  # openai_requests parts at once
    *part_requests, final = requests
    assert final.started >= max(r.ended for r in part_requests)  # combined when all parts are described
    assert all(
        f"part {i} of {len(parts)}" in t
        for i, t in enumerate(
            sorted((user_text(r) for r in part_requests), key=lambda t: int(re.search(r"part (\d+)", t)[1])), 1
        )
    )
    combined = user_text(final)
    for part in parts:
        summary = f"Part from {part[0].start:.1f}: {part[0].text.strip()[:30]}"
        assert f"Summary: {summary}" in combined
    assert "[0.0] Welcome" not in combined  # the parts' descriptions, not the transcript again
    assert final.json and final.json["messages"][0]["content"] == openai_api.COMBINE_INSTRUCTIONS
    assert result.parts == len(parts)
    assert result.summary.startswith("Whole: Part from 0.0")
    part_chapter_starts = {
        segment.start
        for part in parts
        for segment in (part[0], part[len(part) // 2])
        if len(part) > 2 or segment is part[0]
    }
    assert {c.start for c in result.chapters} == part_chapter_starts
    assert result.usage is not None and result.usage.requests == len(parts) + 1
    assert result.usage.total_tokens == 120 * (len(parts) + 1)


def test_parts_without_chapters_combine_into_a_summary_without_chapters(api: OpenAIServer, tmp_path: Path) -> None:
    """No part found a chapter, so the combined answer has no start to copy: its chapters are dropped, not the
    whole answer asked for again and again until the stage fails."""
    parts = split_parts(DEMO_TRANSCRIPT.segments, 60)
    api.chat = lambda received: completion(
        VALID | {"chapters": [{"start": 0.0, "title": "Rivers"}] if "\nParts:\n" in user_text(received) else []}
    )

    result = openai_enrichment(DEMO_TRANSCRIPT, EPISODE, FEED, openai_settings(api, tmp_path), part_tokens=60)

    assert (result.summary, result.chapters, result.parts) == ("Four short stories.", (), len(parts))
    assert len(api.requests(CHAT)) == len(parts) + 1
    assert snap_chapters(Answer.model_validate(VALID).chapters, []) == ()


CALLER = contextvars.ContextVar[str | None]("CALLER", default=None)


def test_each_part_is_described_in_the_callers_context(api: OpenAIServer, tmp_path: Path) -> None:
    """Prefect's settings, client and run context live in context variables: a part's thread must see them."""
    api.queue(CHAT, error(503, "overloaded", "server_error"))
    heard: list[str | None] = []
    token = CALLER.set("the flow's context")
    try:
        openai_enrichment(
            DEMO_TRANSCRIPT,
            EPISODE,
            FEED,
            openai_settings(api, tmp_path, openai_requests=2),
            lambda message: heard.append(CALLER.get()),
            part_tokens=60,
        )
    finally:
        CALLER.reset(token)
    assert heard == ["the flow's context"]  # the retried part's thread heard it


def test_a_part_that_fails_stops_the_others(api: OpenAIServer, tmp_path: Path) -> None:
    assert len(split_parts(DEMO_TRANSCRIPT.segments, 60)) >= 4
    api.queue(CHAT, error(401, "Incorrect API key provided"))
    with pytest.raises(EnrichmentError, match="the API key was refused"):
        settings = openai_settings(api, tmp_path, openai_requests=1)
        openai_enrichment(DEMO_TRANSCRIPT, EPISODE, FEED, settings, part_tokens=60)
    assert len(api.requests(CHAT)) <= 2  # the failed part, and at most one that had already begun


def test_an_invalid_answer_is_asked_again_and_then_fails_clearly(api: OpenAIServer, tmp_path: Path) -> None:
    api.queue(
        CHAT,
        completion("Sure! Here is the summary you asked for."),
        completion(VALID | {"guests": None}),
        completion(VALID | {"chapters": [{"start": 999.0, "title": "Nowhere"}]}),
        completion(VALID),
    )  # never asked for
    with pytest.raises(EnrichmentError) as failure:
        openai_enrichment(DEMO_TRANSCRIPT, EPISODE, FEED, openai_settings(api, tmp_path))

    assert len(api.requests(CHAT)) == openai_chat.ANSWER_ATTEMPTS == 3
    assert str(failure.value) == (
        f"gpt-4o-mini at {api.base_url}: no valid answer in 3 tries; the last: chapter "
        "1 starts at 999.0, which is no [start] mark given"
    )
    second, third = (r.json["messages"] for r in api.requests(CHAT)[1:] if r.json)
    assert second[-1]["content"].startswith("That answer is invalid: answer: Invalid JSON")
    assert third[-1]["content"].startswith("That answer is invalid: guests: Input should be a valid array")
    assert len(third) == 6  # the whole conversation, each invalid answer and what was wrong with it


def test_an_invalid_answer_followed_by_a_valid_one_is_used(api: OpenAIServer, tmp_path: Path) -> None:
    api.queue(CHAT, completion('{"summary": "cut off'), completion(VALID, prompt_tokens=150))
    retries: list[str] = []
    result = openai_enrichment(DEMO_TRANSCRIPT, EPISODE, FEED, openai_settings(api, tmp_path), retries.append)
    assert result.summary == "Four short stories." and len(api.requests(CHAT)) == 2
    assert result.usage is not None and (result.usage.requests, result.usage.prompt_tokens) == (2, 250)
    assert len(retries) == 1 and "invalid answer" in retries[0]


@pytest.mark.parametrize(
    ("reply", "problem"),
    [
        (completion(VALID, finish_reason="length"), "the answer was cut off at the token limit"),
        (Reply(body=b"<html>Bad gateway</html>"), "the response is not JSON"),
        (Reply(json={"choices": []}), "the response is not a chat completion"),
    ],
)
def test_a_response_with_no_usable_answer_is_invalid(
    api: OpenAIServer, tmp_path: Path, reply: Reply, problem: str
) -> None:
    api.chat = lambda received: reply
    with pytest.raises(EnrichmentError, match=f"no valid answer in 3 tries; the last: {problem}$"):
        openai_enrichment(DEMO_TRANSCRIPT, EPISODE, FEED, openai_settings(api, tmp_path))
    assert len(api.requests(CHAT)) == 3


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, "the API key was refused (HTTP 401, type invalid_request_error)"),
        (400, "the request was refused (HTTP 400, type invalid_request_error)"),
    ],
)
def test_a_refused_request_fails_at_once(api: OpenAIServer, tmp_path: Path, status: int, words: str) -> None:
    api.queue(CHAT, error(status, f"{'Incorrect API key provided: ' + KEY if status == 401 else 'Invalid schema'}."))
    with pytest.raises(EnrichmentError) as failure:
        openai_enrichment(DEMO_TRANSCRIPT, EPISODE, FEED, openai_settings(api, tmp_path))
    assert len(api.requests(CHAT)) == 1
    assert words in str(failure.value)
    assert KEY not in str(failure.value) and "SECRET" not in str(failure.value)


MARKER = "SECRET-BODY-MARKER"


def refusing(reason: str) -> Reply:
    reply = completion(VALID)
    reply.json["choices"][0]["message"].update(content=None, refusal=reason)  # type: ignore[index]
    return reply


@pytest.mark.parametrize(
    "reply",
    [
        error(400, f"Invalid schema: {MARKER}", "invalid_request_error", "bad_schema"),
        error(400, "Invalid schema.", f"{MARKER} in words", f"{MARKER}!"),  # not identifiers: not shown either
        Reply(status=400, body=f"<html>{MARKER}</html>".encode()),
        Reply(status=503, body=f"<html>{MARKER}</html>".encode()),
        completion(f"{MARKER}: not JSON"),
        completion(VALID | {MARKER: 1}),
        completion(VALID | {"chapters": [{"start": 0.0, "title": "x", MARKER: 2}]}),
        completion(VALID | {"chapters": [{"start": 999.0, "title": MARKER}]}),
        refusing(MARKER),
    ],
    ids=[
        "error-message",
        "error-identifiers",
        "html-4xx",
        "html-5xx",
        "not-json",
        "extra-field",
        "extra-chapter-field",
        "chapter-title",
        "refusal",
    ],
)
def test_no_failure_or_retry_message_quotes_the_servers_answer(api: OpenAIServer, tmp_path: Path, reply: Reply) -> None:
    """A server's answer is a stranger's bytes: messages and logs say what was wrong with it, never what it said."""
    api.chat = lambda received: reply
    heard: list[str] = []
    with pytest.raises(EnrichmentError) as failure:
        openai_enrichment(DEMO_TRANSCRIPT, EPISODE, FEED, openai_settings(api, tmp_path), heard.append)
    assert [text for text in [str(failure.value), *heard] if MARKER in text] == []


def test_an_account_out_of_quota_is_refused_at_once(api: OpenAIServer, tmp_path: Path) -> None:
    api.queue(
        CHAT,
        error(429, "You exceeded your current quota.", "insufficient_quota", "insufficient_quota"),
        completion(VALID),
    )
    with pytest.raises(
        EnrichmentError,
        match=r"the account is out of quota \(HTTP 429, type insufficient_quota, "
        r"code insufficient_quota\)$",
    ):
        openai_enrichment(DEMO_TRANSCRIPT, EPISODE, FEED, openai_settings(api, tmp_path))
    assert len(api.requests(CHAT)) == 1


def test_rate_limits_and_server_errors_are_retried_with_backoff(api: OpenAIServer, tmp_path: Path) -> None:
    api.queue(
        CHAT,
        error(429, "Rate limit reached", "requests", headers={"Retry-After": "0.3"}),
        error(503, "overloaded", "server_error"),
        completion(VALID),
    )
    retries: list[str] = []
    result = openai_enrichment(DEMO_TRANSCRIPT, EPISODE, FEED, openai_settings(api, tmp_path), retries.append)

    first, second, third = api.requests(CHAT)
    assert second.started - first.ended >= 0.3  # Retry-After honoured
    assert result.summary == "Four short stories." and result.usage is not None and result.usage.requests == 1
    assert ["HTTP 429" in retries[0], "HTTP 503" in retries[1]] == [True, True]


def test_a_server_that_keeps_failing_is_given_up_on(api: OpenAIServer, tmp_path: Path) -> None:
    api.chat = lambda received: error(500, "internal error", "server_error")
    with pytest.raises(EnrichmentError, match=r"gave up after 3 attempts: HTTP 500, type server_error$"):
        openai_enrichment(DEMO_TRANSCRIPT, EPISODE, FEED, openai_settings(api, tmp_path, openai_attempts=3))
    assert len(api.requests(CHAT)) == 3


def test_no_key_for_the_openai_api_fails_before_any_request(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(EnrichmentError, match="no OpenAI API key for enrich=openai: set OPENAI_API_KEY"):
        openai_enrichment(DEMO_TRANSCRIPT, EPISODE, FEED, Settings.of(enrich="openai"))


def test_an_empty_transcript_asks_nothing(api: OpenAIServer, tmp_path: Path) -> None:
    empty = DEMO_TRANSCRIPT.model_copy(update={"segments": ()})
    result = openai_enrichment(empty, EPISODE, FEED, openai_settings(api, tmp_path))
    assert result == Enrichment(method="openai", model="gpt-4o-mini", parts=0, usage=result.usage)
    assert api.requests(CHAT) == []


@pytest.mark.usefixtures("prefect_api")
def test_the_key_can_come_from_a_prefect_secret_block(
    api: OpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    Secret(value="sk-from-the-block-789").save("podflow-test-openai-key", overwrite=True)
    settings = openai_settings(api, tmp_path, openai_api_key_secret="podflow-test-openai-key")
    openai_enrichment(DEMO_TRANSCRIPT, EPISODE, FEED, settings)
    assert header(api.requests(CHAT)[0], "Authorization") == "Bearer sk-from-the-block-789"

    missing = settings.but(openai_api_key_secret="no-such-block")
    with pytest.raises(EnrichmentError, match="Secret block 'no-such-block' .* cannot be loaded"):
        openai_enrichment(DEMO_TRANSCRIPT, EPISODE, FEED, missing)


# openai: the pipeline ------------------------------------------------------------------------------------------------


def run(feed_url: str, settings: Settings) -> tuple[object, IngestReport]:
    state = ingest_feed(feed_url, settings, return_state=True)
    report = state.result(raise_on_failure=False)
    assert isinstance(report, IngestReport), report
    return state, report


@pytest.mark.usefixtures("prefect_api")
def test_the_enrichment_lands_in_metadata_json_and_the_key_nowhere(
    server: FeedServer, api: OpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for demo in DEMO_EPISODES:
        server.add(f"/{demo.slug}.mp3", demo.audio)
    feed_url = server.add("/feed.xml", (DEMO_DIR / "feed.xml").read_bytes())
    settings = openai_settings(api, tmp_path)

    state, report = run(feed_url, settings)

    assert [e.status for e in report.episodes] == ["complete"] * 4
    assert len(api.requests(CHAT)) == 4
    for outcome in report.episodes:
        folder = report.feed_dir / "episodes" / outcome.folder
        document = EpisodeMetadata.model_validate_json((folder / "metadata.json").read_bytes())
        transcript = Transcript.model_validate_json((folder / "transcript.json").read_bytes())
        enrichment = document.enrichment
        assert enrichment is not None and enrichment.method == "openai" and enrichment.model == ANSWERING_MODEL
        assert enrichment.summary.startswith("Part from 0.0: ") and enrichment.hosts == ("Ada Lovelace",)
        assert enrichment.chapters and {c.start for c in enrichment.chapters} <= {s.start for s in transcript.segments}
        assert enrichment.usage is not None and enrichment.usage.total_tokens == 120
    (request, *_) = api.requests(CHAT)
    assert header(request, "Authorization") == f"Bearer {KEY}"

    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        )  # type: ignore[attr-defined]
    assert any("Enriched by gpt-4o-mini-2024-07-18: 1 part(s), 1 requests, 120 tokens" in log.message for log in logs)
    written = {path: path.read_bytes() for path in Path(settings.output.output_dir).rglob("*") if path.is_file()}
    assert any(path.name == LEDGER for path in written)
    assert [str(path) for path, body in written.items() if KEY.encode() in body] == []
    assert KEY not in caplog.text and all(KEY not in log.message for log in logs)
    assert KEY not in report.model_dump_json()


@pytest.mark.usefixtures("prefect_api")
def test_an_enrichment_that_fails_fails_the_metadata_stage_and_a_rerun_asks_again(
    server: FeedServer, api: OpenAIServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    demo = DEMO_EPISODES[0]
    server.add(f"/{demo.slug}.mp3", demo.audio)
    feed_url = server.add("/feed.xml", rss([rss_item(demo.title, guid="rivers", enclosure=f"{demo.slug}.mp3")]))
    settings = openai_settings(api, tmp_path)
    api.chat = lambda received: completion(f"I cannot share {KEY}")  # echoes the key: it must be masked anyway

    state, report = run(feed_url, settings)

    (outcome,) = report.episodes
    assert outcome.status == "failed" and outcome.stages == {
        "download": "done",
        "transcribe": "done",
        "metadata": "failed",
    }
    assert outcome.error and outcome.error.startswith(
        f"EnrichmentError: gpt-4o-mini at {api.base_url}: no valid answer in 3 tries; the last: answer: Invalid JSON"
    )
    assert len(api.requests(CHAT)) == 3
    assert not (report.feed_dir / "episodes" / outcome.folder / "metadata.json").exists()
    ledger = read_folder_ledger(report.feed_dir).model_dump_json()
    assert KEY.encode() not in (report.feed_dir / LEDGER).read_bytes()
    assert "no valid answer in 3 tries" in ledger and KEY not in ledger and KEY not in caplog.text

    api.chat = describing()
    state, report = run(feed_url, settings)

    (outcome,) = report.episodes
    assert outcome.status == "complete" and len(api.requests(CHAT)) == 4
    assert server.count(f"/{demo.slug}.mp3") == 1
    document = EpisodeMetadata.model_validate_json(
        (report.feed_dir / "episodes" / outcome.folder / "metadata.json").read_bytes()
    )
    assert document.enrichment is not None and document.enrichment.method == "openai"


@pytest.mark.usefixtures("prefect_api")
def test_enrich_none_leaves_it_out_and_local_is_the_default(server: FeedServer, tmp_path: Path) -> None:
    demo = DEMO_EPISODES[0]
    server.add(f"/{demo.slug}.mp3", demo.audio)
    feed_url = server.add("/feed.xml", rss([rss_item(demo.title, guid="rivers", enclosure=f"{demo.slug}.mp3")]))
    for enrich_setting, method in (("none", None), ("local", "local")):
        settings = Settings.of(
            output_dir=tmp_path / enrich_setting,
            enrich=enrich_setting,  # type: ignore[arg-type]
            allowed_networks=LOOPBACK,
        )
        _, report = run(feed_url, settings)
        (outcome,) = report.episodes
        document = EpisodeMetadata.model_validate_json(
            (report.feed_dir / "episodes" / outcome.folder / "metadata.json").read_bytes()
        )
        assert (document.enrichment and document.enrichment.method) == method
        if method == "local":
            assert document.enrichment and "river" in document.enrichment.keywords
            assert (
                document.enrichment.summary
                in (report.feed_dir / "episodes" / outcome.folder / "transcript.txt").read_text()
            )
    assert Settings().metadata.enrich == "local"
