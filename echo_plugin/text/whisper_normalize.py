"""Scoring normalisers from Whisper's evaluation: openai-whisper's ``EnglishTextNormalizer``.

Whisper writes ``Five.`` or ``5`` where a reference says ``FIVE``; scored as written that is an
error. Whisper's English normaliser (``whisper.normalizers.EnglishTextNormalizer``, used for every
WER in its paper) lower-cases, drops punctuation and fillers, standardises spellings and writes
spelled numbers as digits, so ``FIVE``, ``five`` and ``5.`` all become ``5`` (``one`` alone stays
``one`` and ``1`` becomes ``one``: it may be a pronoun).

It also joins spoken digit sequences into one number: ``ONE TWO`` becomes ``12``, while ``1, 2``
becomes ``one 2``. For digit-string corpora (FSDD, TIDIGITS) :func:`spell_digits` then writes every
digit as its own word (``12`` -> ``one two``, ``5`` -> ``five``), so a reference and a hypothesis
agree on the digits whichever way they were written, and each digit counts as one word.

Numerals are spelled before Whisper's normaliser as well (:func:`spell_numerals`): its number
normaliser reads a written ``007`` as 7 and ``2.0`` as 2, and deletes text in brackets, so a
hypothesis that wrote the spoken digits "zero zero seven" as ``007`` would lose two of them.
"""
from __future__ import annotations

import re
from collections.abc import Callable

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


_NUMERAL = re.compile(r"[0-9]")
_DIGITS_IN_BRACKETS = re.compile(r"[(\[]([0-9\s.,\-]+)[)\]]")


def spell_numerals(text: str) -> str:
    """Every ASCII digit as its own word, brackets around digits dropped: ``"(555) 007"`` ->
    ``" five  five  five   zero  zero  seven "`` (spaces are normalised later)."""
    text = _DIGITS_IN_BRACKETS.sub(r" \1 ", text)
    return _NUMERAL.sub(lambda m: f" {DIGIT_WORDS[int(m[0])]} ", text)


def spell_digits(text: str) -> str:
    """Every all-digit word written digit by digit in words: ``"12 apples"`` -> ``"one two apples"``."""
    words = []
    for word in text.split():
        words += [DIGIT_WORDS[int(c)] for c in word] if word.isascii() and word.isdigit() else [word]
    return " ".join(words)


def whisper_english() -> Callable[[str], str]:
    """openai-whisper's ``EnglishTextNormalizer`` (ImportError with the install command when absent)."""
    try:
        from whisper.normalizers import EnglishTextNormalizer
    except ImportError as error:
        raise ImportError(f"Whisper's text normaliser needs openai-whisper: pip install openai-whisper ({error})"
                          ) from None
    return EnglishTextNormalizer()


def whisper_english_digits() -> Callable[[str], str]:
    """:func:`spell_numerals`, Whisper's English normaliser, then :func:`spell_digits`."""
    english = whisper_english()
    return lambda text: spell_digits(english(spell_numerals(text)))
