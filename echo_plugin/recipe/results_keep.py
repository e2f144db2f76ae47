"""Rows of a previous RESULTS.md kept for experiments whose exp dir is not here.

RESULTS.md is regenerated from ``exp/`` dirs, which are never committed: on a fresh
clone, or on a machine that ran only some configs, a regeneration would drop every
other experiment's rows. ``read_previous`` reads the file as echo_plugin.recipe.results
wrote it before (its summary rows, its "WER by SNR band" rows and its per-experiment
sections, all as text), so that the new file can carry the experiments absent from
``exp/`` unchanged while every experiment present is rendered afresh.

An experiment's key is ``(tag,)`` in a one-recipe file and ``(recipe, tag)`` in a
file with a recipe column.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SUMMARY_HEADING = "## Summary"
SNR_HEADING = "## WER by SNR band"
Key = tuple[str, ...]


@dataclass
class Previous:
    """What a previous RESULTS.md showed, per experiment key."""

    summary: dict[Key, list[dict[str, str]]] = field(default_factory=dict)  # rows as {column: cell}
    snr: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)  # (tag, decode, set) -> band cells
    details: dict[Key, list[str]] = field(default_factory=dict)  # the "## ..." section's lines
    env_line: str | None = None  # its "Environment: ..." line

    def keys(self) -> set[Key]:
        return set(self.summary) | set(self.details)


def table_after(lines: list[str], heading: str) -> tuple[list[str], list[list[str]]]:
    """Header cells and row cells of the first Markdown table after ``heading`` (empty when absent)."""
    if heading not in lines:
        return [], []
    start = lines.index(heading) + 1
    while start < len(lines) and not lines[start].startswith("|"):
        if lines[start].startswith("## "):
            return [], []
        start += 1
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line.strip().strip("|").split("|"))
    if len(table) < 2:
        return [], []
    return table[0], table[2:]


def section_key(heading: str, with_recipe: bool) -> Key:
    """``## fsdd/asr1/asr_x`` -> ``("fsdd/asr1", "asr_x")`` with a recipe column, ``## asr_x`` -> ``("asr_x",)``."""
    name = heading[len("## "):].strip()
    return tuple(name.rsplit("/", 1)) if with_recipe else (name,)


def band_of(label: str) -> str:
    """The band of an SNR table column: ``clean`` or the dB of ``20 dB``."""
    return label.removesuffix(" dB").strip()


def read_previous(path: Path, with_recipe: bool) -> Previous:
    """The experiments a RESULTS.md at ``path`` shows; empty when there is none."""
    if not path.is_file():
        return Previous()
    lines = path.read_text(encoding="utf-8").splitlines()
    previous = Previous(env_line=next((line for line in lines if line.startswith("Environment: ")), None))
    header, rows = table_after(lines, SUMMARY_HEADING)
    key_columns = ["recipe", "experiment"] if with_recipe else ["experiment"]
    if all(column in header for column in key_columns):
        for cells in rows:
            row = dict(zip(header, cells))
            previous.summary.setdefault(tuple(row[c] for c in key_columns), []).append(row)
    header, rows = table_after(lines, SNR_HEADING)
    if header[:3] == ["experiment", "decode", "test set"]:
        for cells in rows:
            bands = {band_of(label): cell for label, cell in zip(header[3:], cells[3:]) if cell != "-"}
            previous.snr[(cells[0], cells[1], cells[2])] = bands
    headings = [i for i, line in enumerate(lines) if line.startswith("## ")] + [len(lines)]
    for start, end in zip(headings, headings[1:]):
        if lines[start] not in (SUMMARY_HEADING, SNR_HEADING):
            section = lines[start:end]
            previous.details[section_key(lines[start], with_recipe)] = section + [""] * (section[-1] != "")
    return previous


def kept_keys(previous: Previous, present: set[Key]) -> list[Key]:
    """The previous file's experiments that ``exp/`` no longer has, sorted."""
    return sorted(previous.keys() - present)


def kept_summary_rows(previous: Previous, key: Key, header: list[str]) -> list[list[str]]:
    """A kept experiment's summary rows laid out in ``header``'s columns (``-`` for a column it lacked)."""
    return [[row.get(column, "-") for column in header] for row in previous.summary.get(key, [])]


def kept_snr_cells(previous: Previous, kept: list[Key]) -> dict[tuple[str, str, str], dict[str, str]]:
    """The SNR band cells of the kept experiments (the SNR table names experiments by tag alone)."""
    tags = {key[-1] for key in kept}
    return {row: bands for row, bands in previous.snr.items() if row[0] in tags}
