"""Azerbaijani (Latin script) transcript normalisation for ASR training text.

``normalize_azerbaijani(text)`` applies, in this order:

1. Unicode NFC, so ``I`` + U+0307 (combining dot) is the one letter ``İ``.
2. Lookalikes to the Azerbaijani letter: ``ä``/``Ä``, Cyrillic ``ә``/``Ә``
   (U+04D9/U+04D8) and turned ``ǝ``/``Ǝ`` become schwa ``ə``/``Ə``
   (U+0259/U+018F); Cyrillic homoglyphs of Latin letters (``а е о р с х у і ј``)
   become the Latin letter, in both cases and before lower-casing: upper-case
   ``А Е О Р С Х У І Ј`` become ``A E O P C X Y I J`` (so Cyrillic ``А`` in
   ``АZƏRBAYCAN`` lower-cases as Latin ``A`` does; ``І``, drawn as ``I``, becomes
   the dotless ``ı`` as ``I`` does). Cyrillic capitals whose small letter looks
   different (``В Н К М Т``) are left alone. Typographic apostrophes
   (’ ‘ ʼ ` ´) become ``'``.
3. Turkic lower-casing: ``I`` -> ``ı`` and ``İ`` -> ``i`` before ``str.lower()``
   (which maps ``I`` to ``i`` and ``İ`` to ``i`` + U+0307); a stray U+0307
   after ``i`` is dropped.
4. Punctuation and symbols (Unicode categories P*, S*) become spaces, with
   two decisions:
   * an apostrophe between two letters is kept (``e'tibar``, ``ma'lumat``: the
     older orthography writes it and it marks a pronounced glottal break);
     any other apostrophe goes;
   * hyphens are never kept: a hyphenated compound is read as two words
     (``ata-ana`` -> ``ata ana``), and a hyphen carries no sound for the model.
5. Digits are left as digits (no number expansion). Common Voice sentences are
   vetted to hold no digits, so they are rare; spelling them out needs case
   and ordinal suffixes (``5-ci`` = ``beşinci``) that a plain number speller
   gets wrong, which would teach the model wrong words.
6. Whitespace (any Unicode space, tabs, newlines) collapsed to single spaces,
   stripped at both ends.

Letters outside the Azerbaijani alphabet (``w``, Cyrillic words) are kept;
``foreign_letters`` lists them so data preparation can report them.
"""
from __future__ import annotations

import unicodedata

AZ_ALPHABET = frozenset("abcçdeəfgğhxıijkqlmnoöprsştuüvyz")

_LOOKALIKES = str.maketrans({
    "ä": "ə", "Ä": "Ə",
    "\u04d9": "ə", "\u04d8": "Ə",  # Cyrillic schwa
    "\u01dd": "ə", "\u018e": "Ə",  # turned e
    "\u0430": "a", "\u0435": "e", "\u043e": "o", "\u0440": "p", "\u0441": "c",
    "\u0445": "x", "\u0443": "y", "\u0456": "i", "\u0458": "j",
    # their capitals, to the Latin capital they look like (mapped before Turkic lower-casing)
    "\u0410": "A", "\u0415": "E", "\u041e": "O", "\u0420": "P", "\u0421": "C",
    "\u0425": "X", "\u0423": "Y", "\u0406": "I", "\u0408": "J",
    "\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'",
})
_TURKIC_UPPER_I = str.maketrans({"I": "ı", "İ": "i"})
_COMBINING_DOT = "\u0307"


def turkic_lower(text: str) -> str:
    """Lower-case with the Turkic dotted/dotless i rules (I -> ı, İ -> i)."""
    lowered = text.translate(_TURKIC_UPPER_I).lower()
    return lowered.replace("i" + _COMBINING_DOT, "i")


def _is_punct_or_symbol(char: str) -> bool:
    return unicodedata.category(char)[0] in "PS"


def strip_punctuation(text: str) -> str:
    """Punctuation/symbols -> spaces, keeping an apostrophe only between two letters."""
    out = []
    for i, char in enumerate(text):
        if char == "'":
            inside = 0 < i < len(text) - 1 and text[i - 1].isalpha() and text[i + 1].isalpha()
            out.append(char if inside else " ")
        elif _is_punct_or_symbol(char):
            out.append(" ")
        else:
            out.append(char)
    return "".join(out)


def normalize_azerbaijani(text: str) -> str:
    """The ASR training form of an Azerbaijani sentence (see the module doc for the rules)."""
    text = unicodedata.normalize("NFC", text).translate(_LOOKALIKES)
    text = strip_punctuation(turkic_lower(text))
    return " ".join(text.split())


def foreign_letters(text: str) -> set[str]:
    """Letters of a normalised text that are not in the Azerbaijani alphabet."""
    return {c for c in text if c.isalpha() and c not in AZ_ALPHABET and c != "'"}
