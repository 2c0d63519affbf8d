"""The batched decoder's rounds (tasks/transcribe/batched.py): what counts as a loop, how what is heard again joins
what was heard, and how pieces laid end to end map back to the window. Words are made here; the rounds on real
speech are in tests/test_long_episodes.py."""

from __future__ import annotations

import numpy as np
from faster_whisper.transcribe import Word

from tasks.audio import SAMPLE_RATE
from tasks.transcribe.batched import PACKED_PAUSE_S, Packed, contiguous, loops, merged, unheard


def said(text: str, start_s: float = 0.0, each_s: float = 0.3) -> list[Word]:
    return [Word(start_s + n * each_s, start_s + (n + 1) * each_s, f" {w}", 0.9) for n, w in enumerate(text.split())]


def test_a_phrase_again_and_again_is_a_loop_and_a_sentence_said_twice_is_not() -> None:
    assert loops(said("and then Matayler measures Matayler measures Matayler measures Matayler measures"))
    assert loops(said("it was the the the the the the the the end"))
    assert not loops(said("no, no, no, I said"))  # three in a row, but only three words
    jfk = "ask not what your country can do for you, ask what you can do for your country."
    assert not loops(said(f"{jfk} It takes heat to bring out the odor. {jfk}"))


def test_words_heard_again_join_those_heard_less_the_ones_already_heard() -> None:
    heard = said("a cold dip", 10.0)  # 10.0-10.9
    again = said("dip restores health", 10.65)  # its "dip" lies over the first "dip"; the rest is new
    joined = merged(heard, again)
    assert [w.word.strip() for w in joined] == ["a", "cold", "dip", "restores", "health"]
    assert [w.start for w in joined] == sorted(w.start for w in joined)


def test_pieces_laid_end_to_end_map_back_to_the_window() -> None:
    samples = np.arange(60 * SAMPLE_RATE, dtype=np.float32)
    spans = [(5 * SAMPLE_RATE, 7 * SAMPLE_RATE), (40 * SAMPLE_RATE, 43 * SAMPLE_RATE)]
    packed = Packed.of(samples, spans)
    assert packed.samples.size == 5 * SAMPLE_RATE + 2 * round(PACKED_PAUSE_S * SAMPLE_RATE)
    for (a, b), (start, end) in zip(packed.pieces, spans):
        assert np.array_equal(packed.samples[a:b], samples[start:end])
    second_s = packed.pieces[1][0] / SAMPLE_RATE
    (word,) = said("zest", second_s + 0.5, 0.4)
    assert packed.in_window(word).start == 40.5
    # A word the decoder places just before its piece, in the pause, belongs to that piece all the same.
    (early,) = said("a", second_s - 0.3, 0.4)
    assert 39.6 < packed.in_window(early).start < 40
    # A span of the packed samples across both pieces is where their speech lies in the window.
    assert packed.origins((SAMPLE_RATE, packed.pieces[1][0] + SAMPLE_RATE)) == [
        (6 * SAMPLE_RATE, 7 * SAMPLE_RATE),
        (40 * SAMPLE_RATE, 41 * SAMPLE_RATE),
    ]


def test_stretches_join_speech_with_its_pauses_up_to_their_length_and_zero_leaves_each_piece_alone() -> None:
    speech = [(0, 10 * SAMPLE_RATE), (12 * SAMPLE_RATE, 25 * SAMPLE_RATE), (26 * SAMPLE_RATE, 40 * SAMPLE_RATE)]
    assert contiguous(speech, 30) == [(0, 25 * SAMPLE_RATE), (26 * SAMPLE_RATE, 40 * SAMPLE_RATE)]
    assert contiguous(speech, 0) == speech


def test_speech_no_word_covers_is_heard_again_and_a_breath_is_not() -> None:
    stretch = [(0, 20 * SAMPLE_RATE)]
    speech = [(0, 8 * SAMPLE_RATE), (8 * SAMPLE_RATE + 8000, 20 * SAMPLE_RATE)]
    words = said("one two three four", 0.0, 2.0) + said("nine", 18.0, 2.0)  # 0-8 s and 18-20 s
    assert unheard(stretch, speech, words) == [(8 * SAMPLE_RATE + 8000, 18 * SAMPLE_RATE)]
    assert unheard(stretch, speech, said("one two three four", 0.0, 4.0) + said("x", 16.5, 3.5)) == []
