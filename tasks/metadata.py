"""Build `metadata.json`: feed, episode, audio, transcript and processing facts for one episode."""

from __future__ import annotations

import json

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks import audio as audio_codec
from tasks.audio import AudioProbe
from tasks.enrich import enrich
from tasks.files import write_record
from tasks.models import (
    AudioFacts,
    AudioFile,
    Enrichment,
    Episode,
    EpisodeMetadata,
    Feed,
    ProcessingFacts,
    Settings,
    StageTiming,
    Transcript,
    TranscriptFacts,
    utc_now,
)
from tasks.prefect_glue import episode_run_name, fail_quietly
from tasks.store import FeedStore
from tasks.transcribe.stage import TRANSCRIPT_FILES


def build_metadata(
    feed: Feed,
    episode: Episode,
    audio: AudioFile,
    probe: AudioProbe,
    transcript: Transcript,
    processing: ProcessingFacts,
    enrichment: Enrichment | None = None,
) -> EpisodeMetadata:
    """The metadata document; the audio facts come from the file itself, not from what the feed claims."""
    return EpisodeMetadata(
        feed=feed,
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
            source_url=transcript.source_url,
            estimated_timing=transcript.estimated_timing,
            word_count=len(transcript.text.split()),
            segment_count=len(transcript.segments),
            files=TRANSCRIPT_FILES,
        ),
        processing=processing,
        enrichment=enrichment,
    )


def metadata_json_schema() -> str:
    """The JSON Schema of metadata.json, for consumers that validate it."""
    return json.dumps(EpisodeMetadata.model_json_schema(), indent=2) + "\n"


@task(name="metadata", cache_policy=NO_CACHE, task_run_name=episode_run_name("metadata"))
@fail_quietly
def metadata(
    feed: Feed, episode: Episode, audio: AudioFile, transcript: Transcript, store: FeedStore, settings: Settings
) -> EpisodeMetadata:
    """Write metadata.json. With enrich=openai an EnrichmentError (the API refused, or gave no valid answer) fails
    the stage, so the next run asks again rather than leaving the episode complete without what was asked for."""
    logger = get_run_logger()
    with store.recording(episode.episode_id, "metadata") as recording:
        probe = audio_codec.probe(audio.path)
        enrichment = enrich(transcript, episode, feed, settings, on_retry=logger.warning)
        if enrichment is not None and enrichment.usage is not None:
            logger.info(
                "Enriched by %s: %d part(s), %d requests, %d tokens",
                enrichment.model,
                enrichment.parts,
                enrichment.usage.requests,
                enrichment.usage.total_tokens,
            )
        stages = store.read_ledger().episodes[episode.episode_id].stages
        timings = {
            name: StageTiming(started=o.started, ended=o.ended) for name, o in stages.items() if o.status == "done"
        }
        timings["metadata"] = StageTiming(started=recording.started, ended=utc_now())
        document = build_metadata(
            feed,
            episode,
            audio,
            probe,
            transcript,
            ProcessingFacts(flow_run_id=flow_run.id, stages=timings),
            enrichment,
        )
        write_record(audio.path.parent / "metadata.json", document)
    return document
