"""Transcript normalisers, looked up by name (``--text_norm`` of data preparation)."""
from __future__ import annotations

from collections.abc import Callable

from echo_plugin.text.azerbaijani import normalize_azerbaijani


def collapse_whitespace(text: str) -> str:
    """The text as written, whitespace collapsed to single spaces."""
    return " ".join(text.split())


TEXT_NORMALIZERS: dict[str, Callable[[str], str]] = {
    "az": normalize_azerbaijani,
    "none": collapse_whitespace,
}


def get_normalizer(name: str) -> Callable[[str], str]:
    """The normaliser registered under ``name``; KeyError listing the known names."""
    try:
        return TEXT_NORMALIZERS[name]
    except KeyError:
        raise KeyError(f"unknown text normaliser '{name}'; known: {', '.join(sorted(TEXT_NORMALIZERS))}") from None
