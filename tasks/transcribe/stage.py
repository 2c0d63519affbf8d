"""Transcribe an episode: a transcript the feed publishes, or the chosen transcriber (tasks/transcribers.py) on its
audio; written as text, JSON, SRT and WebVTT."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger

from tasks.episode_folder import TRANSCRIPT_FILES, TRANSCRIPT_JSON, TRANSCRIPT_SRT, TRANSCRIPT_TEXT, TRANSCRIPT_VTT
from tasks.errors import ModelMismatchError, TranscriptionError
from tasks.events import Chose, FellBack, Heard, Moved, Retried, StageEvent, Tell, by_tenths, nobody
from tasks.feed_run import FeedEpisode
from tasks.files import atomic_write_text, no_link, write_record
from tasks.models import AudioFile, Episode, Settings, Transcript
from tasks.prefect_glue import stage_task
from tasks.store import StageRecording
from tasks.transcribe.base import Backend, hears_audio, load_backend, on_cluster, workers_in_process
from tasks.transcribe.languages import AUTO_MODEL
from tasks.transcribe.model_choice import choose_model, heard_with
from tasks.transcribe.published import PUBLISHED, published_transcript
from tasks.transcribe.subtitles import to_srt, to_vtt


def read_transcript(episode_dir: Path, audio: AudioFile) -> Transcript | None:
    """The transcript a previous run finished from this very audio file, if any."""
    path = no_link(episode_dir / TRANSCRIPT_JSON)
    if not path.is_file():
        return None
    transcript = Transcript.model_validate_json(path.read_bytes())
    return transcript if (transcript.episode_id, transcript.audio_sha256) == (audio.episode_id, audio.sha256) else None


def write_transcript(transcript: Transcript, episode_dir: Path) -> None:
    atomic_write_text(episode_dir / TRANSCRIPT_TEXT, transcript.text + "\n")
    atomic_write_text(episode_dir / TRANSCRIPT_SRT, to_srt(transcript.segments))
    atomic_write_text(episode_dir / TRANSCRIPT_VTT, to_vtt(transcript.segments))
    write_record(episode_dir / TRANSCRIPT_JSON, transcript)  # last: its presence means the stage is done


def preferred_published(episode: Episode, audio: AudioFile, settings: Settings, tell: Tell) -> Transcript | None:
    """The transcript the feed links, where there is a usable one; None sends the episode to the chosen transcriber,
    after telling FellBack where the links failed (unless published_fallback is off: then they fail it)."""
    try:
        return published_transcript(episode, audio, settings)
    except TranscriptionError as exc:
        if not settings.transcribe.published_fallback:
            raise
        tell(FellBack(str(exc)))
        return None


def cluster_backend(settings: Settings) -> Backend:
    from tasks.transcribe.cluster import cluster_client  # Dask is an optional extra

    return cluster_client(settings)


def transcribe_audio(
    audio: AudioFile,
    episode: Episode,
    episode_dir: Path,
    settings: Settings,
    tell: Tell = nobody,
    feed_language: str | None = None,
) -> Transcript:
    """The episode's transcript, written to its folder; one already written from this audio is returned as is.

    A published transcript first where the settings ask for one and the feed links one (FellBack says why the
    transcriber was used after all), else the transcriber the settings choose from BACKENDS; one that hears the
    audio with the model chosen by the language the episode, else its feed (`feed_language`), declares. `tell`
    hears how it goes (tasks/events.py): Chose the model, Heard as the audio is heard, Retried, Moved to each
    cluster worker that takes it.
    """
    if (done := read_transcript(episode_dir, audio)) is not None:
        if not all((episode_dir / name).is_file() for name in TRANSCRIPT_FILES):  # made before podflow wrote them
            write_transcript(done, episode_dir)
        return done
    transcript = None
    if settings.transcribe.prefer_published and settings.transcribe.transcriber != PUBLISHED:
        transcript = preferred_published(episode, audio, settings, tell)
    if transcript is None:
        transcript = (
            heard_transcript(audio, episode, settings, tell, feed_language)
            if hears_audio(settings)
            else load_backend(settings, workers_in_process(settings)).transcribe(audio, episode, settings, tell)
        )
    write_transcript(transcript, episode_dir)
    return transcript


def heard_transcript(
    audio: AudioFile, episode: Episode, settings: Settings, tell: Tell, feed_language: str | None
) -> Transcript:
    """The transcript by a transcriber that hears the audio, here or on the cluster, with the model and language
    chosen for the episode (model_choice.py; Chose says which and why)."""
    choice = choose_model(settings.transcribe, episode.language, feed_language)
    tell(Chose(choice.model, choice.reason))
    chosen = heard_with(settings, choice)
    backend = cluster_backend(chosen) if on_cluster(chosen) else load_backend(chosen, workers_in_process(chosen))
    try:
        transcript = backend.transcribe(audio, episode, chosen, tell)
    except ModelMismatchError as exc:  # a cluster worker holds another model
        if settings.transcribe.model != AUTO_MODEL:
            raise
        raise ModelMismatchError(f"{exc}. Model auto chose {choice.model} for this episode: {choice.reason}") from None
    return transcript.model_copy(update={"model_choice": choice})


def stored_transcript(job: FeedEpisode) -> Transcript | None:
    """The transcript an earlier run made from the episode's recorded audio (whether or not that is still there)."""
    audio = job.folder.entry.audio
    return read_transcript(job.folder.path, audio) if audio else None


@stage_task("transcribe")
def transcribe(job: FeedEpisode, settings: Settings, audio: AudioFile, recording: StageRecording) -> Transcript:
    logger = get_run_logger()

    def log(event: StageEvent) -> None:
        match event:
            case Heard(done_s, total_s):
                logger.info("%.0f%% transcribed (%.0f of %.0f s of audio)", 100 * done_s / total_s, done_s, total_s)
            case Retried(message):
                logger.warning("%s", message)
            case FellBack(reason):
                logger.warning("Transcribing the audio: the published transcript is unusable: %s", reason)
            case Moved(worker) if recording.workers:
                logger.warning("Moved to cluster worker %s: worker %s left mid-way", worker, recording.workers[-1])
            case Moved(worker):
                logger.info("Transcribing on cluster worker %s", worker)
            case Chose(model, reason):
                logger.info("Transcribing with %s: %s", model, reason)
        if isinstance(event, Moved):
            recording.workers.append(event.worker)  # the ledger keeps them too

    return transcribe_audio(audio, job.episode, job.folder.path, settings, by_tenths(log), job.feed.language)
