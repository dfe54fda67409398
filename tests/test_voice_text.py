"""Text handed to a voice: markup/emoji stripping, streamed sentence splitting, word error rate."""

from __future__ import annotations

import pytest

from lorebook.voice.text import SentenceSplitter, has_words, speakable, word_error_rate


def test_speakable_strips_markdown_emoji_tags_and_urls():
    text = "**Hello** 👋 world!\n- see [the docs](http://x.org) <b>now</b> `code` 🎉\n# Title"
    cleaned = speakable(text)
    assert cleaned.startswith("Hello world!")
    for junk in ("*", "👋", "🎉", "http", "<b>", "`", "#", "- "):
        assert junk not in cleaned
    assert "the docs" in cleaned and "Title" in cleaned


@pytest.mark.parametrize("text", ["🎉🎉", "***", "<br/>", "   ", "```\nprint(1)\n```", "👍🏽‍♂️"])
def test_speakable_leaves_nothing_for_symbol_only_text(text):
    assert speakable(text) == ""
    assert not has_words(speakable(text))


def test_speakable_keeps_spanish_accents_and_punctuation():
    assert speakable("¿Cuánto **dinero** lleva? ¡Bienvenido! 😀") == "¿Cuánto dinero lleva? ¡Bienvenido!"


def stream(splitter: SentenceSplitter, text: str, step: int = 3) -> list[str]:
    out = []
    for start in range(0, len(text), step):
        out += splitter.push(text[start:start + step])
    return out + splitter.flush()


def test_splitter_releases_sentences_as_soon_as_complete():
    splitter = SentenceSplitter()
    assert splitter.push("Paris is the capital") == []
    assert splitter.push(" of France. It is") == ["Paris is the capital of France."]
    assert splitter.flush() == ["It is"]


def test_splitter_ignores_abbreviations_decimals_and_initials():
    text = "Dr. Smith met J. Doe at 3.5 km, e.g. near the park. Then they left!"
    assert stream(SentenceSplitter(first_min_chars=1000), text) == [
        "Dr. Smith met J. Doe at 3.5 km, e.g. near the park.", "Then they left!"]


def test_splitter_cuts_long_first_clause_at_comma_and_overlong_text_at_space():
    first = SentenceSplitter(first_min_chars=20)
    pieces = stream(first, "Well, the first thing you should know about this, is that it works.")
    assert pieces[0].endswith(",") and len(pieces) == 2
    long = SentenceSplitter(max_chars=50, first_max_chars=30)
    pieces = stream(long, "word " * 40)
    assert len(pieces[0]) <= 30 and all(len(p) <= 50 for p in pieces)  # the first piece is cut sooner
    assert " ".join(pieces).split() == ["word"] * 40


def test_splitter_splits_on_newlines_and_drops_symbol_only_pieces():
    assert stream(SentenceSplitter(), "First line\n***\nSecond line") == ["First line", "Second line"]


def test_word_error_rate():
    assert word_error_rate("The cat sat.", "the cat sat") == 0.0
    assert word_error_rate("the cat sat on the mat", "the cat sat on a mat") == pytest.approx(1 / 6)
    assert word_error_rate("hola qué tal", "hola") == pytest.approx(2 / 3)
    assert word_error_rate("a b", "a b c d") == pytest.approx(1.0)
