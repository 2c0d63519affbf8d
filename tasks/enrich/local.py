"""enrich=local: an extractive summary and keywords, worked out with no network and no library.

SumBasic (Nenkova & Vanderwende, 2005) picks the summary's sentences and word frequency, with the episode title's
words counted twice, picks the keywords. The candidates did not earn a dependency: sumy's tokenizers need nltk and
its data downloaded at run time, which podflow must never do; yake gives keywords only (no summary) and brings three
packages with it. Words are Unicode letter runs, so any language is scored; only English has a stopword list, and in
a transcript of ten sentences or more a word found in more than half of them is taken for a stopword of whatever
language it is in.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

from tasks.models import Enrichment, Episode, Transcript

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
