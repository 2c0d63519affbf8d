"""Enrich an episode's metadata: a summary and keywords worked out locally (tasks/enrich/local.py), or a summary,
topics, chapters, hosts and guests from a chat model (tasks/enrich/openai_api.py, its conversation with the model in
tasks/enrich/openai_chat.py). `enrich` picks the one the settings name."""

from __future__ import annotations

from tasks.enrich.local import local_enrichment
from tasks.enrich.openai_api import openai_enrichment
from tasks.events import Retried, Tell, nobody
from tasks.models import Enrichment, Episode, Feed, Settings, Transcript


def enrich(
    transcript: Transcript,
    episode: Episode,
    feed: Feed,
    settings: Settings,
    tell: Tell = nobody,
) -> Enrichment | None:
    """The enrichment `settings.metadata.enrich` asks for, or None for enrich=none; `tell` hears Retried of each request
    tried again."""
    if settings.metadata.enrich == "none":
        return None
    if settings.metadata.enrich == "local":
        return local_enrichment(transcript, episode)
    return openai_enrichment(transcript, episode, feed, settings, lambda message: tell(Retried(message)))
