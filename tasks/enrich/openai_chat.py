"""enrich=openai's conversation with the chat model: the answer's schema, its validation, and one ChatModel per
episode that sends the requests, retries what is worth it and counts the tokens."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.errors import EnrichmentError, InvalidAnswer, RequestFailed
from tasks.models import Chapter, Settings, TokenUsage
from tasks.openai_client import api_key, call_with_retries, masked, new_client

ANSWER_ATTEMPTS = 3  # requests per part when the answer is not JSON or not valid
CHAPTER_START_TOLERANCE_S = 1.0  # a chapter start this close to a segment start is taken as that start
CHAT_TIMEOUT_S = 300.0  # a chat request sends nothing until its answer is complete
DESCRIPTION_CHARS = 2_000


class ChapterAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: float = Field(description="Copied from a [start] mark.")
    title: str


class Answer(BaseModel):
    """What the chat model must answer: every field required and no other, as a strict JSON schema wants it."""

    model_config = ConfigDict(extra="forbid")
    summary: str
    topics: list[str]
    chapters: list[ChapterAnswer]
    hosts: list[str]
    guests: list[str]


RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "episode_description", "schema": Answer.model_json_schema(), "strict": True},
}


def snap_chapters(chapters: Sequence[ChapterAnswer], starts: Sequence[float]) -> tuple[Chapter, ...]:
    """The chapters at the segment starts they name, in order; InvalidAnswer if a start names none. With no
    starts to name (no part had chapters to combine) there are no chapters, and the answer is still valid."""
    if not starts:
        return ()
    snapped: dict[float, Chapter] = {}
    for number, chapter in enumerate(chapters, start=1):
        nearest = min(starts, key=lambda start: abs(start - chapter.start), default=None)
        if nearest is None or abs(nearest - chapter.start) > CHAPTER_START_TOLERANCE_S:
            raise InvalidAnswer(f"chapter {number} starts at {chapter.start}, which is no [start] mark given")
        if chapter.title.strip():
            snapped.setdefault(nearest, Chapter(start=nearest, title=chapter.title.strip()))
    return tuple(sorted(snapped.values(), key=lambda chapter: chapter.start))


def _where(loc: tuple[int | str, ...]) -> str:
    """`chapters.0.title`: the place of a problem in the answer, a field the schema does not know told as such,
    not named (its name is the model's words)."""
    known = Answer.model_fields.keys() | ChapterAnswer.model_fields.keys()
    return ".".join(str(p) if isinstance(p, int) or p in known else "(unknown field)" for p in loc) or "answer"


class ChatModel:
    """One episode's conversation partner: sends requests, retries what is worth it, counts the tokens."""

    def __init__(self, settings: Settings, on_retry: Callable[[str], None]):
        self.settings = settings
        self.on_retry = on_retry
        self.key = api_key(settings.openai, EnrichmentError)
        if self.key is None and not settings.openai.openai_base_url:
            raise EnrichmentError(
                "no OpenAI API key for enrich=openai: set OPENAI_API_KEY, or name a Prefect Secret block in "
                "openai_api_key_secret"
            )
        self.where = f"{settings.metadata.enrich_model} at {settings.openai.openai_base_url or 'api.openai.com'}"
        self.stopped = threading.Event()  # set when a part has failed: the others send nothing more
        self.client = new_client(
            settings.openai, self.key, openai.Timeout(CHAT_TIMEOUT_S, connect=settings.network.http_timeout_s)
        )
        self.lock = threading.Lock()
        self.usage = TokenUsage()
        self.models: list[str] = []

    def close(self) -> None:
        self.client.close()

    def masked(self, message: str) -> str:
        """The message naming the model, with the key masked should a server have echoed it."""
        return masked(f"{self.where}: {message}", self.key)

    def failure(self, message: str) -> EnrichmentError:
        return EnrichmentError(self.masked(message))

    def ask(self, system: str, user: str, starts: Sequence[float]) -> tuple[Answer, tuple[Chapter, ...]]:
        """A valid answer and its chapters; an invalid one is asked again, telling the model what was wrong."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        for attempt in range(1, ANSWER_ATTEMPTS + 1):
            content = None
            try:
                content = self._complete(messages)
                answer = self._parse(content)
                return answer, snap_chapters(answer.chapters, starts)
            except InvalidAnswer as exc:
                problem = str(exc)
            if attempt == ANSWER_ATTEMPTS:
                raise self.failure(f"no valid answer in {attempt} tries; the last: {problem}")
            self.on_retry(self.masked(f"invalid answer ({problem[:200]}); asking again"))
            messages += [
                {"role": "assistant", "content": (content or "")[:DESCRIPTION_CHARS]},
                {"role": "user", "content": f"That answer is invalid: {problem}. Answer again, following the schema."},
            ]
        raise AssertionError("unreachable")

    @staticmethod
    def _parse(content: str | None) -> Answer:
        if not content:
            raise InvalidAnswer("the answer is empty")
        try:
            return Answer.model_validate_json(content)
        except ValidationError as exc:
            problems = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors()[:3])
            raise InvalidAnswer(problems) from None

    def _complete(self, messages: list[dict[str, str]]) -> str | None:
        """The answer's text; 408, 409, 429, 5xx, timeouts and lost connections are retried, other refusals fail."""

        def send() -> Any:
            try:
                # Plain role/content dicts and a JSON-schema dict, as the API takes them; the stubs want TypedDicts.
                return self.client.chat.completions.create(  # type: ignore[call-overload]
                    model=self.settings.metadata.enrich_model, messages=messages, response_format=RESPONSE_FORMAT
                )
            except ValueError:  # a 200 whose body is no JSON at all
                raise InvalidAnswer("the response is not JSON") from None

        try:
            response = call_with_retries(
                send,
                self.settings.openai,
                EnrichmentError,
                self.stopped,
                key=self.key,
                timeout_s=CHAT_TIMEOUT_S,
                on_retry=lambda m: self.on_retry(self.masked(m)),
            )
        except RequestFailed as exc:
            if exc.refused:
                raise self.failure(f"{exc.reason} ({exc.detail})") from None
            raise self.failure(f"gave up after {exc.attempts} attempts: {exc.detail}") from None
        return self._content(response)

    def _content(self, response: Any) -> str | None:
        """The text of a chat completion's answer, its tokens counted."""
        self._count(response)
        try:
            choice = response.choices[0]
            finish_reason, content, refusal = choice.finish_reason, choice.message.content, choice.message.refusal
        except (AttributeError, IndexError, TypeError):
            raise InvalidAnswer("the response is not a chat completion") from None
        if finish_reason == "length":
            raise InvalidAnswer("the answer was cut off at the token limit")
        if refusal:  # its reason is the model's words: not repeated
            raise InvalidAnswer("the model refused to answer")
        return content

    def _count(self, response: object) -> None:
        usage = getattr(response, "usage", None)
        with self.lock:
            self.usage = TokenUsage(
                requests=self.usage.requests + 1,
                prompt_tokens=self.usage.prompt_tokens + (getattr(usage, "prompt_tokens", 0) or 0),
                completion_tokens=self.usage.completion_tokens + (getattr(usage, "completion_tokens", 0) or 0),
                total_tokens=self.usage.total_tokens + (getattr(usage, "total_tokens", 0) or 0),
            )
            if (model := getattr(response, "model", None)) and model not in self.models:
                self.models.append(model)
