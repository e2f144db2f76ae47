"""RESULTS.md's "WER by SNR band" table: the SNR-stratified decodes of asr.sh's ``--snr_test_sets``.

A decoded test set named ``<base>_clean`` or ``<base>_snr<dB>`` (the names of
``echo_plugin.recipe.snr_sets.band_name``) is one band of ``<base>``. The table has
one row per (experiment, decode dir, base set, folds x seeds) with at least one band, one
column per band found anywhere (``clean`` first, then SNR from high to low), and cells
``WER % (Sub/Del/Ins)`` pooled over the experiment's runs; a band that experiment did not
decode shows as ``-``. Bands decoded by different runs (folds x seeds) go on separate rows,
so a cell never pools other runs than its row says.
"""
from __future__ import annotations

import re
from typing import Iterable

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


def snr_section(cells: Iterable[tuple[str, str, str, str, str]]) -> list[str]:
    """The "WER by SNR band" section's Markdown lines from (experiment, decode dir, test set, folds x seeds,
    cell) tuples (the cell: ``WER % (Sub/Del/Ins)`` pooled over those runs), one per (experiment, decode dir,
    test set); sets that are no SNR band are left out. Empty when none is."""
    table: dict[tuple[str, str, str, str], dict[str, str]] = {}
    for tag, decode_dir, test_set, runs, cell in cells:
        split = split_band(test_set)
        if split is not None:
            table.setdefault((tag, decode_dir, split[0], runs), {})[split[1]] = cell
    if not table:
        return []
    bands = band_order(band for row in table.values() for band in row)
    header = ["experiment", "decode", "test set", "folds x seeds"] + [b if b == CLEAN else f"{b} dB" for b in bands]
    lines = [
        "## WER by SNR band",
        "",
        "WER % (word Sub/Del/Ins) of the SNR-stratified copies of each test set (asr.sh `--snr_test_sets`), "
        "pooled over the experiment's runs (folds x seeds); CLAIMS_noise.md gives the paired comparisons with "
        "their intervals.",
        "",
        "|" + "|".join(header) + "|",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for key in sorted(table):
        row = table[key]
        lines.append("|" + "|".join([*key, *(row.get(b, "-") for b in bands)]) + "|")
    return lines + [""]
