"""Enrich an episode's metadata: a summary and keywords worked out locally, or a summary, topics, chapters, hosts
and guests from a chat model (OpenAI, or any server that speaks its chat completions API).

local needs no network and no library: SumBasic (Nenkova & Vanderwende, 2005) picks the summary's sentences and
word frequency, with the episode title's words counted twice, picks the keywords. The candidates did not earn a
dependency: sumy's tokenizers need nltk and its data downloaded at run time, which podflow must never do; yake
gives keywords only (no summary) and brings three packages with it. Words are Unicode letter runs, so any
language is scored; only English has a stopword list, and in a transcript of ten sentences or more a word found in
more than half of them is taken for a stopword of whatever language it is in.

openai gets the transcript as `[start] text` lines, one per segment, and answers JSON that follows a pydantic
schema (a strict `json_schema` response format), validated here again. A transcript longer than `PART_TOKENS` is
sent in parts, each described by its own request (`openai_requests` at once), and one last request combines the
parts' descriptions.
"""

from __future__ import annotations

import contextvars
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tasks.errors import EnrichmentError
from tasks.models import Chapter, Enrichment, Episode, Feed, Segment, Settings, TokenUsage, Transcript
from tasks.openai_client import RequestFailed, api_key, call_with_retries, masked, new_client

# ---------------------------------------------------------------------------------------------------------- local

MAX_KEYWORDS = 10
MAX_SUMMARY_SENTENCES = 5
MIN_SENTENCE_WORDS = 4
STOPWORDS = frozenset(
    """
a about above after again against all almost also although always am among an and another any anyone anything are
around as at back be became because become been before being below between both but by can cannot could did do does
doing done down during each either else enough even ever every few for from further get gets getting go goes going
gone got had has have having he her here hers herself him himself his how however i if in into is it its itself
just know last less let like made make makes many may maybe me might mine more most much must my myself need never
new next no nor not nothing now of off often on once one only or other others our ours ourselves out over own
perhaps quite rather really right said same say says see seem seems several shall she should since so some someone
something still such take than that the their theirs them themselves then there these they thing things think this
those though through thus to too under until up upon us use used very want was way we well were what whatever when
where whether which while who whom whose why will with within without would yeah yes yet you your yours yourself
yourselves okay oh um uh hmm gonna wanna kind sort lot lots actually basically mean
episode episodes podcast show today welcome talk talking hello hi thanks thank first second third fourth fifth
""".split()
)


def _words(text: str) -> list[str]:
    """Lower-case runs of letters (any script), apostrophes kept inside a word."""
    return re.findall(r"[^\W\d_]+(?:['’][^\W\d_]+)*", text.lower())


def _sentences(transcript: Transcript) -> list[str]:
    """The transcript's sentences; its segments instead where it has no sentence punctuation to split at."""
    sentences = [s for s in re.split(r"(?<=[.!?…])\s+|(?<=[。！？])", transcript.text) if s.strip()]
    if sentences and max(len(s.split()) for s in sentences) > 80:
        sentences = [segment.text.strip() for segment in transcript.segments if segment.text.strip()]
    return [s.strip() for s in sentences]


def _content_words(sentences: list[list[str]]) -> Callable[[str], str | None]:
    """Maps a word to the form it is counted under (a plural under its singular), or None for a stopword."""
    counts = Counter(word for sentence in sentences for word in sentence)
    found_in = Counter(word for sentence in sentences for word in set(sentence))
    common = {w for w, n in found_in.items() if len(sentences) >= 10 and n > len(sentences) / 2}

    def form(word: str) -> str | None:
        if word in STOPWORDS or word in common or len(word) < 3:
            return None
        return word[:-1] if word.endswith("s") and counts.get(word[:-1]) else word

    return form


def local_enrichment(transcript: Transcript, episode: Episode) -> Enrichment:
    """An extractive summary (SumBasic) and the transcript's keywords, with no network."""
    sentences = _sentences(transcript)
    tokens = [_words(sentence) for sentence in sentences]
    form = _content_words(tokens)
    content = [[f for w in words if (f := form(w))] for words in tokens]
    counts = Counter(word for words in content for word in words)
    if not counts:
        return Enrichment(method="local", parts=0)  # nothing to summarise

    in_title = {f for w in _words(episode.title) if (f := form(w))}
    order = {word: i for i, word in reversed(list(enumerate(w for words in content for w in words)))}
    score = {word: n * (2 if word in in_title else 1) for word, n in counts.items()}
    keywords = sorted(score, key=lambda w: (-score[w], order[w]))[:MAX_KEYWORDS]

    # SumBasic: take the sentence whose words are likeliest on average, then square the likelihood of the words it
    # used, so the next pick says something else. Averaged over at least 3 words: one frequent word is no summary.
    total = sum(counts.values())
    likelihood = {word: n / total for word, n in counts.items()}
    candidates = [i for i, words in enumerate(tokens) if len(words) >= MIN_SENTENCE_WORDS and content[i]]
    candidates = candidates or [i for i, words in enumerate(content) if words]
    picked: list[int] = []
    for _ in range(max(1, min(MAX_SUMMARY_SENTENCES, len(sentences) // 10))):
        remaining = [i for i in candidates if i not in picked]
        if not remaining:
            break
        best = max(remaining, key=lambda i: sum(likelihood[w] for w in content[i]) / max(3, len(content[i])))
        picked.append(best)
        for word in set(content[best]):
            likelihood[word] **= 2
    return Enrichment(
        method="local", summary=" ".join(sentences[i] for i in sorted(picked)), keywords=tuple(keywords), parts=1
    )


# --------------------------------------------------------------------------------------------------------- openai

PART_TOKENS = 8_000  # transcript tokens per request: leaves room in an 8k-16k context self-hosted model too
BYTES_PER_TOKEN = 4  # about right for English; UTF-8's longer letters count more where tokens are shorter
ANSWER_ATTEMPTS = 3  # requests per part when the answer is not JSON or not valid
CHAPTER_START_TOLERANCE_S = 1.0  # a chapter start this close to a segment start is taken as that start
CHAT_TIMEOUT_S = 300.0  # a chat request sends nothing until its answer is complete
DESCRIPTION_CHARS = 2_000

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


class InvalidAnswer(ValueError):
    """An answer that is not JSON, does not follow the schema, or names a chapter start that is not a segment's."""


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


class ChatModel:
    """One episode's conversation partner: sends requests, retries what is worth it, counts the tokens."""

    def __init__(self, settings: Settings, on_retry: Callable[[str], None]):
        self.settings = settings
        self.on_retry = on_retry
        self.key = api_key(settings, EnrichmentError)
        if self.key is None and not settings.openai_base_url:
            raise EnrichmentError(
                "no OpenAI API key for enrich=openai: set OPENAI_API_KEY, or name a Prefect Secret block in "
                "openai_api_key_secret"
            )
        self.where = f"{settings.enrich_model} at {settings.openai_base_url or 'api.openai.com'}"
        self.stopped = threading.Event()  # set when a part has failed: the others send nothing more
        self.client = new_client(settings, self.key, openai.Timeout(CHAT_TIMEOUT_S, connect=settings.http_timeout_s))
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
                    model=self.settings.enrich_model, messages=messages, response_format=RESPONSE_FORMAT
                )
            except ValueError:  # a 200 whose body is no JSON at all
                raise InvalidAnswer("the response is not JSON") from None

        try:
            response = call_with_retries(
                send,
                self.settings,
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
) -> Enrichment:
    """Summary, topics, chapters at segment starts, hosts and guests from the settings' chat model.

    Raises EnrichmentError when the API refuses the request (401, 400, ...), keeps failing (429, 5xx, no
    connection, `download_attempts` times) or gives no valid answer in `ANSWER_ATTEMPTS` tries; `on_retry` hears
    of each retry. The API key appears in no message.
    """
    segments = [segment for segment in transcript.segments if segment.text.strip()]
    if not segments:
        return Enrichment(method="openai", model=settings.enrich_model, parts=0, usage=TokenUsage())
    context = _context(episode, feed)
    parts = split_parts(segments, PART_TOKENS)
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
            with ThreadPoolExecutor(min(settings.openai_requests, len(parts)), "podflow-enrich") as pool:
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
        model=", ".join(chat.models) or settings.enrich_model,
        summary=answer.summary.strip(),
        topics=_names(answer.topics),
        chapters=chapters,
        hosts=_names(answer.hosts),
        guests=_names(answer.guests),
        parts=len(parts),
        usage=chat.usage,
    )


# ------------------------------------------------------------------------------------------------------- either


def enrich(
    transcript: Transcript,
    episode: Episode,
    feed: Feed,
    settings: Settings,
    on_retry: Callable[[str], None] = lambda message: None,
) -> Enrichment | None:
    """The enrichment `settings.enrich` asks for, or None for enrich=none."""
    if settings.enrich == "none":
        return None
    if settings.enrich == "local":
        return local_enrichment(transcript, episode)
    return openai_enrichment(transcript, episode, feed, settings, on_retry)
