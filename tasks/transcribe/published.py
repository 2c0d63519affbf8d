"""Take a Podcasting 2.0 `<podcast:transcript>` the feed links for an episode as its transcript: the links of the
preferred types, fetched in turn, each parsed by tasks/transcribe/published_parse.py in a child process."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from tasks import audio as audio_codec
from tasks.errors import TranscriptionError
from tasks.events import Tell
from tasks.http import fetch_document
from tasks.isolation import parse_isolated
from tasks.models import PUBLISHED_TRANSCRIPT_TYPES, AudioFile, Episode, Settings, Transcript, TranscriptLink
from tasks.transcribe.published_parse import HTML, JSON, PLAIN, SRT, VTT, canonical_type, parse_published

PUBLISHED = "published"  # the transcriber that is only this, and the backend its transcripts record
MAX_LINKS_TRIED = 3  # transcripts of the preferred types fetched for one episode before it is given up
SUFFIX_TYPES = {".vtt": VTT, ".srt": SRT, ".json": JSON, ".html": HTML, ".htm": HTML, ".txt": PLAIN}


def ranked_links(episode: Episode, preference: Sequence[str]) -> list[tuple[TranscriptLink, str]]:
    """The episode's transcript links of the preferred types, most preferred first (the feed's order among
    equals), each with its type."""
    ranked = [canonical_type(media_type) for media_type in preference]
    candidates = [
        (ranked.index(kind), order, link, kind)
        for order, link in enumerate(episode.transcripts)
        if (kind := media_type_of(link.type, link.url)) in ranked
    ]
    return [(link, kind) for _, _, link, kind in sorted(candidates, key=lambda candidate: candidate[:2])]


def read_link(
    link: TranscriptLink, media_type: str, audio: AudioFile, duration_s: float, settings: Settings
) -> Transcript:
    """Fetch and parse one published transcript; TranscriptionError, naming the URL, when it cannot be used."""
    fetched = fetch_document(link.url, settings, TranscriptionError, "published transcript")
    try:
        segments, timed = parse_isolated(
            parse_published,
            (fetched.body, media_type, duration_s, settings.documents.max_transcript_segments),
            settings,
            "the transcript",
            TranscriptionError,
        )
    except TranscriptionError as exc:
        raise TranscriptionError(f"{link.url}: {exc}") from exc
    return Transcript(
        episode_id=audio.episode_id,
        audio_sha256=audio.sha256,
        backend=PUBLISHED,
        model=media_type,
        language=link.language,
        audio_duration_s=round(duration_s, 3),
        source_url=link.url,
        estimated_timing=not timed,
        segments=tuple(segments),
    )


def published_transcript(episode: Episode, audio: AudioFile, settings: Settings) -> Transcript | None:
    """The first usable transcript the feed links for the episode, trying the preferred types in order (at most
    MAX_LINKS_TRIED of them: a feed may list thousands); None when it links none of them. Raises TranscriptionError
    with each tried link's reason when none could be used."""
    links = ranked_links(episode, settings.transcribe.published_types)
    if not links:
        return None
    duration_s = audio_codec.duration_s(
        audio.path, settings.transcribe.max_audio_duration_s, settings.transcribe.max_decode_s
    )
    reasons = []
    for link, media_type in links[:MAX_LINKS_TRIED]:
        try:
            return read_link(link, media_type, audio, duration_s, settings)
        except TranscriptionError as exc:
            reasons.append(str(exc))
    untried = f"; {len(links) - MAX_LINKS_TRIED} more links not tried" if len(links) > MAX_LINKS_TRIED else ""
    raise TranscriptionError("; ".join(reasons) + untried)


class PublishedBackend:
    """transcriber=published: only the transcripts the feed links, never the audio transcribed."""

    def __init__(self, settings: Settings, at_once: int):
        """Nothing to load: each episode's links are fetched as it comes."""

    def transcribe(self, audio: AudioFile, episode: Episode, settings: Settings, tell: Tell) -> Transcript:
        if (transcript := published_transcript(episode, audio, settings)) is None:
            offered = ", ".join(link.type or link.url for link in episode.transcripts) or "none"
            raise TranscriptionError(
                f"the feed links no transcript of a type in published_types for this episode (offered: {offered})"
            )
        return transcript


def media_type_of(declared_type: str | None, url: str) -> str | None:
    """The type in PUBLISHED_TRANSCRIPT_TYPES that a transcript link declares, else the one its URL suffix suggests."""
    if declared_type and (media_type := canonical_type(declared_type)) in PUBLISHED_TRANSCRIPT_TYPES:
        return media_type
    return SUFFIX_TYPES.get(PurePosixPath(urlsplit(url).path).suffix.lower())
