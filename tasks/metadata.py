"""Build `metadata.json`: feed, episode, audio, transcript and processing facts for one episode, and the podflow and
the settings that made them."""

from __future__ import annotations

import json

from prefect import get_run_logger
from prefect.runtime import flow_run

from tasks import audio as audio_codec
from tasks.audio import AudioProbe
from tasks.enrich import enrich
from tasks.episode_folder import METADATA, TRANSCRIPT_FILES
from tasks.events import Retried, StageEvent
from tasks.feed_run import FeedEpisode
from tasks.files import write_record
from tasks.models import (
    AudioFacts,
    AudioFile,
    Enrichment,
    Episode,
    EpisodeMetadata,
    Feed,
    FeedFacts,
    ProcessingFacts,
    Settings,
    StageTiming,
    TranscribedWith,
    Transcript,
    TranscriptFacts,
    utc_now,
)
from tasks.prefect_glue import stage_task
from tasks.store import StageRecording
from tasks.version import podflow_version


def build_metadata(
    feed: Feed,
    episode: Episode,
    audio: AudioFile,
    probe: AudioProbe,
    transcript: Transcript,
    processing: ProcessingFacts,
    enrichment: Enrichment | None = None,
    transcribed_with: TranscribedWith | None = None,
) -> EpisodeMetadata:
    """The metadata document; the audio facts come from the file itself, not from what the feed claims."""
    return EpisodeMetadata(
        podflow_version=podflow_version(),
        feed=FeedFacts.of(feed),
        episode=episode,
        audio=AudioFacts(
            file=audio.path.name,
            bytes=audio.bytes,
            sha256=audio.sha256,
            source_url=audio.source_url,
            content_type=audio.content_type,
            duration_s=transcript.audio_duration_s,
            codec=probe.codec,
            sample_rate=probe.sample_rate,
            channels=probe.channels,
            bit_rate=probe.bit_rate,
        ),
        transcript=TranscriptFacts(
            backend=transcript.backend,
            model=transcript.model,
            language=transcript.language,
            language_probability=transcript.language_probability,
            model_choice=transcript.model_choice,
            source_url=transcript.source_url,
            estimated_timing=transcript.estimated_timing,
            word_count=len(transcript.text.split()),
            segment_count=len(transcript.segments),
            files=TRANSCRIPT_FILES,
        ),
        transcribed_with=transcribed_with,
        processing=processing,
        enrichment=enrichment,
    )


def metadata_json_schema() -> str:
    """The JSON Schema of metadata.json, for consumers that validate it."""
    return json.dumps(EpisodeMetadata.model_json_schema(), indent=2) + "\n"


def stored_metadata(job: FeedEpisode) -> EpisodeMetadata | None:
    """The metadata.json an earlier run wrote for the episode."""
    path = job.folder.file(METADATA)
    return EpisodeMetadata.model_validate_json(path.read_bytes()) if path.is_file() else None


@stage_task("metadata")
def metadata(
    job: FeedEpisode, settings: Settings, audio: AudioFile, transcript: Transcript, recording: StageRecording
) -> EpisodeMetadata:
    """Write metadata.json. With enrich=openai an EnrichmentError (the API refused, or gave no valid answer) fails
    the stage, so the next run asks again rather than leaving the episode complete without what was asked for."""
    logger = get_run_logger()
    probe = audio_codec.probe(audio.path)

    def log(event: StageEvent) -> None:
        if isinstance(event, Retried):
            logger.warning("%s", event.message)

    enrichment = enrich(transcript, job.episode, job.feed, settings, log)
    if enrichment is not None and enrichment.usage is not None:
        logger.info(
            "Enriched by %s: %d part(s), %d requests, %d tokens",
            enrichment.model,
            enrichment.parts,
            enrichment.usage.requests,
            enrichment.usage.total_tokens,
        )
    stages = job.store.entry(job.episode.episode_id).stages
    timings = {name: StageTiming(started=o.started, ended=o.ended) for name, o in stages.items() if o.status == "done"}
    timings["metadata"] = StageTiming(started=recording.started, ended=utc_now())
    processing = ProcessingFacts(flow_run_id=flow_run.id, stages=timings)
    # Known only where this run transcribed the audio: an earlier run's transcript may have had other settings.
    transcribed = "transcribe" in job.stages and transcript.source_url is None
    transcribed_with = TranscribedWith.of(settings.transcribe) if transcribed else None
    document = build_metadata(job.feed, job.episode, audio, probe, transcript, processing, enrichment, transcribed_with)
    write_record(job.folder.file(METADATA), document)
    return document
