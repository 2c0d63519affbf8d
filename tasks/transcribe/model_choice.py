"""Which model hears an episode, told which language: the language setting, else the one the episode declares, else
its feed's, else none (the model detects it). model=auto takes bundled:tiny.en for English or no language and
bundled:base for any other; any other model is pinned: it hears every episode, and one that hears only English
refuses an episode declared in another language.
"""

from __future__ import annotations

from tasks.errors import EnglishOnlyModelError
from tasks.models import ModelChoice, Settings, TranscribeSettings
from tasks.models.records import LanguageSource
from tasks.transcribe.languages import (
    AUTO_ENGLISH_MODEL,
    AUTO_MODEL,
    AUTO_MULTILINGUAL_MODEL,
    ENGLISH,
    english_only,
    spoken_language,
)

SAID_AS: dict[LanguageSource, str] = {
    "setting": "language setting",
    "episode": "episode language",
    "feed": "feed language",
}


def declared_language(
    setting: str | None, episode: str | None, feed: str | None
) -> tuple[str, LanguageSource] | tuple[None, None]:
    """The first of these that names a language Whisper hears, as its code, and which it was; one that names none
    (a feed's `<language>klingon</language>`) is passed over."""
    sources: tuple[tuple[LanguageSource, str | None], ...] = (
        ("setting", setting),
        ("episode", episode),
        ("feed", feed),
    )
    for source, declared in sources:
        if (code := spoken_language(declared)) is not None:
            return code, source
    return None, None


def choose_model(
    transcribe: TranscribeSettings, episode_language: str | None = None, feed_language: str | None = None
) -> ModelChoice:
    """The model an episode is heard with, the language it is told, and why; EnglishOnlyModelError where the
    settings pin a model that hears only English and the episode is declared in another language."""
    language, source = declared_language(transcribe.language, episode_language, feed_language)
    said = f"{SAID_AS[source]} {language}" if source else "no language declared"
    other_language = language not in (None, ENGLISH)
    if transcribe.model != AUTO_MODEL:
        if other_language and english_only(transcribe.model):
            raise EnglishOnlyModelError(
                f"{said}, but the model {transcribe.model} hears only English: set the model to "
                f"{AUTO_MULTILINGUAL_MODEL} (--model {AUTO_MULTILINGUAL_MODEL}) or to {AUTO_MODEL} (leave --model out)"
            )
        model, reason = transcribe.model, f"{said}; the model setting names {transcribe.model}"
    elif other_language:
        model, reason = AUTO_MULTILINGUAL_MODEL, f"{said}; {AUTO_ENGLISH_MODEL} is English-only"
    else:
        model, reason = AUTO_ENGLISH_MODEL, said
    return ModelChoice(model=model, reason=reason, language=language, language_source=source)


def heard_with(settings: Settings, choice: ModelChoice) -> Settings:
    """The settings with the chosen model and language: what the transcriber is given for the episode."""
    transcribe = settings.transcribe.model_copy(update={"model": choice.model, "language": choice.language})
    return settings.model_copy(update={"transcribe": transcribe})
