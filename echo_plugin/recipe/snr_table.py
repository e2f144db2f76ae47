"""RESULTS.md's "WER by SNR band" table: the SNR-stratified decodes of asr.sh's ``--snr_test_sets``.

A decoded test set named ``<base>_clean`` or ``<base>_snr<dB>`` (the names of
``echo_plugin.recipe.snr_sets.band_name``) is one band of ``<base>``. The table has
one row per (experiment, decode dir, base set) with at least one band, one column per
band found anywhere (``clean`` first, then SNR from high to low), and cells
``WER % (Sub/Del/Ins)``; a band that experiment did not decode shows as ``-``.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

BAND = re.compile(r"^(?P<base>.+)_(?:(?P<clean>clean)|snr(?P<snr>-?\d+(?:\.\d+)?))$")
CLEAN = "clean"


def split_band(test_set: str) -> tuple[str, str] | None:
    """``(base set, band)`` of an SNR-stratified set name (band ``clean`` or the dB as written), else None."""
    match = BAND.match(test_set)
    if match is None:
        return None
    return match["base"], CLEAN if match["clean"] else match["snr"]


def band_order(bands: Iterable[str]) -> list[str]:
    """``clean`` first, then SNRs from the highest to the lowest."""
    unique = set(bands)
    snrs = sorted((b for b in unique if b != CLEAN), key=float, reverse=True)
    return ([CLEAN] if CLEAN in unique else []) + snrs


def wer_cell(scores: dict) -> str:
    """``WER % (Sub/Del/Ins)`` of a decode's scores (echo_plugin.recipe.score's scores.json)."""
    wer = scores["wer"]
    return f"{wer['error_rate']:.2f} ({wer['substitutions']}/{wer['deletions']}/{wer['insertions']})"


def snr_section(experiments: Iterable[Any], kept: dict[tuple[str, str, str], dict[str, str]] | None = None) -> list[str]:
    """The "WER by SNR band" section's Markdown lines for results.Experiment objects (``tag``, ``decodes``).

    ``kept``: band cells of experiments no longer in exp/, by (tag, decode dir, base set),
    from the previous RESULTS.md (echo_plugin.recipe.results_keep). Empty when no decode
    is SNR-stratified.
    """
    cells: dict[tuple[str, str, str], dict[str, str]] = dict(kept or {})
    for e in experiments:
        for d in e.decodes:
            split = split_band(d.test_set)
            if split is not None and d.scores is not None:
                cells.setdefault((e.tag, d.decode_dir, split[0]), {})[split[1]] = wer_cell(d.scores)
    if not cells:
        return []
    bands = band_order(band for row in cells.values() for band in row)
    header = ["experiment", "decode", "test set"] + [b if b == CLEAN else f"{b} dB" for b in bands]
    lines = [
        "## WER by SNR band",
        "",
        "WER % (word Sub/Del/Ins) of the SNR-stratified copies of each test set (asr.sh `--snr_test_sets`).",
        "",
        "|" + "|".join(header) + "|",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for key in sorted(cells):
        row = cells[key]
        lines.append("|" + "|".join([*key, *(row.get(b, "-") for b in bands)]) + "|")
    return lines + [""]
