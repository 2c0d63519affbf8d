"""Languages: a declared language read as Whisper's code, the model chosen for it, and a feed of French, German and
English episodes through the real flow, the real Prefect engine and real Whisper on espeak-ng speech
(tests/fixtures/generate.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogWorker

from flows.ingest import ingest_feed
from tasks.errors import EnglishOnlyModelError
from tasks.feed_parse import parse_page
from tasks.models import EpisodeMetadata, IngestReport, ModelChoice, Settings
from tasks.transcribe.languages import english_only, spoken_language
from tasks.transcribe.model_choice import choose_model
from tests.conftest import DEMO_EPISODES
from tests.feeds import rss, rss_item
from tests.feedserver import FeedServer
from tests.speech import word_error_rate, words
from tests.transcripts import MAX_WER

FIXTURES = Path(__file__).parent / "fixtures"
SPOKEN = {clip["language"]: clip for clip in json.loads((FIXTURES / "speech.json").read_text())}
ENGLISH = DEMO_EPISODES[0]
DUBLIN_CORE = b'xmlns:dc="http://purl.org/dc/elements/1.1/" '
PINNED_TINY_EN = (
    "{said}, but the model bundled:tiny.en hears only English: set the model to bundled:base (--model bundled:base) "
    "or to auto (leave --model out)"
)


@pytest.mark.parametrize(
    ("declared", "code"),
    [
        ("fr", "fr"),
        ("fr-FR", "fr"),
        ("FR", "fr"),
        ("fr_ca", "fr"),
        (" de-DE ", "de"),
        ("French", "fr"),
        ("en-us", "en"),
        ("zh-Hant-TW", "zh"),
        ("nb-NO", "no"),  # Bokmål, which Whisper calls Norwegian
        ("haw", "haw"),
        ("klingon", None),
        ("x-pig-latin", None),
        ("fr<script>", None),
        ("fr-" + "x" * 100, None),  # no language tag runs this long
        ("", None),
        (None, None),
    ],
)
def test_a_declared_language_is_read_as_whispers_code_and_anything_else_ignored(
    declared: str | None, code: str | None
) -> None:
    assert spoken_language(declared) == code


@pytest.mark.parametrize(
    ("model", "only"),
    [
        ("bundled:tiny.en", True),
        ("small.en", True),
        ("/models/base.en/", True),
        ("bundled:base", False),
        ("large-v3", False),
        ("/models/french", False),
    ],
)
def test_models_named_dot_en_hear_only_english(model: str, only: bool) -> None:
    assert english_only(model) is only


def choice(model: str, reason: str, language: str | None, source: str | None) -> ModelChoice:
    return ModelChoice.model_validate(
        {"model": model, "reason": reason, "language": language, "language_source": source}
    )


@pytest.mark.parametrize(
    ("settings", "episode", "feed", "chosen"),
    [
        ({}, None, None, choice("bundled:tiny.en", "no language declared", None, None)),
        ({}, None, "en-GB", choice("bundled:tiny.en", "feed language en", "en", "feed")),
        ({}, None, "fr", choice("bundled:base", "feed language fr; bundled:tiny.en is English-only", "fr", "feed")),
        (
            {},
            "de",
            "en",
            choice("bundled:base", "episode language de; bundled:tiny.en is English-only", "de", "episode"),
        ),
        ({}, "en", "fr", choice("bundled:tiny.en", "episode language en", "en", "episode")),
        (
            {},
            "klingon",
            "fr-CA",
            choice("bundled:base", "feed language fr; bundled:tiny.en is English-only", "fr", "feed"),
        ),
        ({}, None, "gibberish", choice("bundled:tiny.en", "no language declared", None, None)),
        (
            {"language": "es"},
            "de",
            "fr",
            choice("bundled:base", "language setting es; bundled:tiny.en is English-only", "es", "setting"),
        ),
        ({"language": "en"}, "de", None, choice("bundled:tiny.en", "language setting en", "en", "setting")),
        (
            {"model": "bundled:base"},
            None,
            "en",
            choice("bundled:base", "feed language en; the model setting names bundled:base", "en", "feed"),
        ),
        (
            {"model": "bundled:tiny.en"},
            None,
            None,
            choice("bundled:tiny.en", "no language declared; the model setting names bundled:tiny.en", None, None),
        ),
        (
            {"model": "large-v3"},
            "de",
            None,
            choice("large-v3", "episode language de; the model setting names large-v3", "de", "episode"),
        ),
    ],
)
def test_auto_chooses_the_multilingual_model_for_a_declared_language_other_than_english(
    settings: dict[str, Any], episode: str | None, feed: str | None, chosen: ModelChoice
) -> None:
    assert choose_model(Settings.of(**settings).transcribe, episode, feed) == chosen


@pytest.mark.parametrize(
    ("settings", "episode", "feed", "said"),
    [
        ({"model": "bundled:tiny.en"}, None, "fr", "feed language fr"),
        ({"model": "bundled:tiny.en"}, "de-AT", "en", "episode language de"),
        ({"model": "bundled:tiny.en", "language": "es"}, None, None, "language setting es"),
    ],
)
def test_a_pinned_english_only_model_refuses_another_declared_language_saying_how_to_fix_it(
    settings: dict[str, Any], episode: str | None, feed: str | None, said: str
) -> None:
    with pytest.raises(EnglishOnlyModelError) as refused:
        choose_model(Settings.of(**settings).transcribe, episode, feed)
    assert str(refused.value) == PINNED_TINY_EN.format(said=said)


def test_the_model_setting_defaults_to_auto_and_the_language_setting_takes_whispers_codes() -> None:
    assert Settings().transcribe.model == "auto"
    assert Settings.of(language="fr-FR").transcribe.language == "fr"
    assert Settings.of(language=" ").transcribe.language is None
    with pytest.raises(ValueError, match="Whisper hears no language 'klingon': give a code such as fr or de"):
        Settings.of(language="klingon")


def test_an_items_declared_language_is_read_and_a_strangers_garbage_ignored() -> None:
    items = [
        rss_item("Bonjour", guid="1", extra="<dc:language>fr-FR</dc:language>"),
        rss_item("Hallo", guid="2", extra="<language>DE</language>"),
        rss_item("Nothing", guid="3"),
        rss_item("Garbage", guid="4", extra="<dc:language>../../etc/passwd</dc:language>"),
    ]
    body = (
        rss(items).replace(b"<rss ", b"<rss " + DUBLIN_CORE).replace(b"<channel>", b"<channel><language>es</language>")
    )
    page = parse_page(body, "https://example.org/feed.xml", "https://example.org/feed.xml", {}, 10)
    assert page.feed.language == "es"
    assert [episode.language for episode in page.episodes] == ["fr", "de", None, None]


def language_feed(server: FeedServer) -> str:
    """A French show (its channel says so) with one German episode and one English one, each item declaring it."""
    server.add("/fr.mp3", (FIXTURES / "speech-fr.mp3").read_bytes())
    server.add("/de.mp3", (FIXTURES / "speech-de.mp3").read_bytes())
    server.add("/en.mp3", ENGLISH.audio)
    items = [
        rss_item("Bonjour", guid="fr", enclosure="fr.mp3"),
        rss_item("Guten Tag", guid="de", enclosure="de.mp3", extra="<dc:language>de-DE</dc:language>"),
        rss_item(ENGLISH.title, guid="en", enclosure="en.mp3", extra="<dc:language>en</dc:language>"),
    ]
    body = rss(items, title="Le Show").replace(b"<rss ", b"<rss " + DUBLIN_CORE)
    return server.add("/feed.xml", body.replace(b"<channel>", b"<channel><language>fr</language>"))


def ingested(feed_url: str, settings: Settings) -> tuple[IngestReport, list[str]]:
    """The run's report, and the messages its Prefect run logger wrote."""
    state = ingest_feed(feed_url, settings, return_state=True)
    report = state.result(raise_on_failure=False)
    assert isinstance(report, IngestReport), report
    APILogWorker.drain_all(timeout=30)  # the logs are sent in batches, in the background: all of them first
    with get_client(sync_client=True) as prefect:
        flow_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
        return report, [log.message for log in prefect.read_logs(log_filter=flow_run)]


def metadata_of(report: IngestReport, title: str) -> EpisodeMetadata:
    [outcome] = [episode for episode in report.episodes if episode.title == title]
    assert outcome.status == "complete", outcome.error
    folder = report.feed_dir / "episodes" / outcome.folder
    return EpisodeMetadata.model_validate_json((folder / "metadata.json").read_bytes())


@pytest.mark.usefixtures("prefect_api")
def test_auto_hears_a_french_feed_and_a_german_episode_with_the_multilingual_model(
    server: FeedServer, settings: Settings
) -> None:
    report, logs = ingested(language_feed(server), settings)

    french, german, english = (metadata_of(report, title) for title in ("Bonjour", "Guten Tag", ENGLISH.title))
    assert french.transcript.model_choice == choice(
        "bundled:base", "feed language fr; bundled:tiny.en is English-only", "fr", "feed"
    )
    assert german.transcript.model_choice == choice(
        "bundled:base", "episode language de; bundled:tiny.en is English-only", "de", "episode"
    )
    assert english.transcript.model_choice == choice("bundled:tiny.en", "episode language en", "en", "episode")
    for document, language in ((french, "fr"), (german, "de")):
        transcript = document.transcript
        assert (transcript.model, transcript.language, transcript.language_probability) == (
            "bundled:base",
            language,
            None,
        )
        heard = transcript_text(report, document.episode.title)
        assert word_error_rate(SPOKEN[language]["script"], heard) < 0.2, heard
    assert {"bonjour", "paris", "france", "café"} <= set(words(transcript_text(report, "Bonjour")))
    assert {"guten", "tag", "berlin", "deutschland"} <= set(words(transcript_text(report, "Guten Tag")))
    assert word_error_rate(ENGLISH.script, transcript_text(report, ENGLISH.title)) < MAX_WER
    assert english.transcript.model == "bundled:tiny.en"
    assert "Transcribing with bundled:base: feed language fr; bundled:tiny.en is English-only" in logs
    assert "Transcribing with bundled:base: episode language de; bundled:tiny.en is English-only" in logs
    assert "Transcribing with bundled:tiny.en: episode language en" in logs


def transcript_text(report: IngestReport, title: str) -> str:
    [outcome] = [episode for episode in report.episodes if episode.title == title]
    return (report.feed_dir / "episodes" / outcome.folder / "transcript.txt").read_text()


@pytest.mark.usefixtures("prefect_api")
def test_a_pinned_english_model_fails_the_french_and_german_episodes_and_hears_the_english_one(
    server: FeedServer, settings: Settings
) -> None:
    report, logs = ingested(language_feed(server), settings.but(model="bundled:tiny.en"))

    outcome = {episode.title: episode for episode in report.episodes}
    for title, said in (("Bonjour", "feed language fr"), ("Guten Tag", "episode language de")):
        assert (outcome[title].status, outcome[title].stages.get("transcribe")) == ("failed", "failed")
        assert PINNED_TINY_EN.format(said=said) in (outcome[title].error or "")
    english = metadata_of(report, ENGLISH.title)
    assert english.transcript.model_choice == choice(
        "bundled:tiny.en", "episode language en; the model setting names bundled:tiny.en", "en", "episode"
    )
    assert word_error_rate(ENGLISH.script, transcript_text(report, ENGLISH.title)) < MAX_WER
    assert not any(message.startswith("Transcribing with bundled:base") for message in logs)
