"""Kaldi data-dir helpers shared by the recipe stages.

A Kaldi table file holds one ``key value`` pair per line, split at the first
run of whitespace; the value may be empty (``text`` lines without words).
Files are written sorted by key in byte order, as ``LC_ALL=C sort`` does
(Python orders ``str`` by code point, which is UTF-8 byte order).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

MAX_FAULTS = 20


class DataDirError(Exception):
    """One or more faults, each a one-line message naming file and utterance."""

    def __init__(self, faults: list[str]):
        super().__init__("\n".join(faults))
        self.faults = faults


def fault(path: Path | str, uttid: str, problem: str) -> str:
    """The one-line message for a fault of utterance ``uttid`` in ``path``."""
    return f"{path}: utterance '{uttid}': {problem}"


def utf8_fault(path: Path | str, lineno: int, line: str) -> str | None:
    """The fault of a line read with ``errors="surrogateescape"`` that was not valid UTF-8 (None if it was)."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError as e:
        byte = ord(line[e.start]) - 0xDC00  # surrogateescape keeps an undecodable byte b as U+DC00+b
        column = len(line[: e.start].encode("utf-8", "surrogateescape")) + 1
        key = line.split(maxsplit=1)[0]  # the line holds at least the bad byte
        where = "" if any("\udc80" <= c <= "\udcff" for c in key) else f"utterance '{key}': "
        return (f"{path}:{lineno}: {where}not valid UTF-8 (byte 0x{byte:02x} at byte {column} of the line); "
                "save the file as UTF-8")
    return None


def read_text_lines(path: Path | str) -> list[str]:
    """The lines of a UTF-8 text file; DataDirError naming the file and each line that is not UTF-8."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        lines = [line.rstrip("\n") for line in f]  # numbered as read_table_faults numbers them
    faults = [fault for lineno, line in enumerate(lines, start=1) if (fault := utf8_fault(path, lineno, line))]
    if faults:
        raise DataDirError(faults)
    return lines


def read_table_faults(path: Path) -> tuple[dict[str, str], list[str]]:
    """Read a Kaldi table file keeping each key's first line; also the faults: duplicate keys, and lines
    that are not UTF-8 (each named by file and line, and utterance where its id decodes; the line is left out)."""
    table: dict[str, str] = {}
    first_line: dict[str, int] = {}
    faults = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for lineno, line in enumerate(f, start=1):
            bad_bytes = utf8_fault(path, lineno, line.rstrip("\r\n"))
            if bad_bytes:
                faults.append(bad_bytes)
                continue
            fields = line.strip().split(maxsplit=1)
            if not fields:
                continue
            key = fields[0]
            if key in table:
                faults.append(
                    f"{path}:{lineno}: duplicate utterance id '{key}' (first on line {first_line[key]})"
                )
                continue
            table[key] = fields[1] if len(fields) == 2 else ""
            first_line[key] = lineno
    return table, faults


def read_table(path: Path) -> dict[str, str]:
    """Read a Kaldi table file; raise DataDirError naming every duplicate key and every line not in UTF-8."""
    table, faults = read_table_faults(path)
    if faults:
        raise DataDirError(faults)
    return table


def write_table(path: Path, table: Mapping[str, object]) -> None:
    """Write ``key value`` lines sorted by key in byte order."""
    with open(path, "w", encoding="utf-8") as f:
        for key in sorted(table):
            f.write(f"{key} {table[key]}\n")


def spk2utt(utt2spk: Mapping[str, str]) -> dict[str, str]:
    """Invert utt2spk: speaker -> its utterance ids, sorted, space separated."""
    speakers: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        speakers.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in speakers.items()}


def parse_numbers(text: str) -> list[float]:
    """The numbers of a text holding one number per line (blank lines skipped)."""
    return [float(word) for word in text.split()]


def read_numbers(path: Path) -> list[float]:
    """The numbers in a file holding one number per line."""
    return parse_numbers("\n".join(read_text_lines(path)))


def report_faults(prog: str, faults: Iterable[str]) -> int:
    """Print the first MAX_FAULTS faults to stderr, one per line; return exit status 1."""
    faults = list(faults)
    for line in faults[:MAX_FAULTS]:
        print(f"{prog}: error: {line}", file=sys.stderr)
    if len(faults) > MAX_FAULTS:
        print(f"{prog}: error: stopped after {MAX_FAULTS} faults; fix these and run again for more", file=sys.stderr)
    return 1


def run_reporting_faults(prog: str, step: Callable[[], object], errors: tuple[type[Exception], ...]) -> int:
    """Run ``step()`` as a command's body: exit status 0, or 1 after :func:`report_faults` has printed the
    faults of a DataDirError or the one-line message of one of ``errors``; other exceptions propagate."""
    try:
        step()
    except DataDirError as e:
        return report_faults(prog, e.faults)
    except errors as e:
        return report_faults(prog, [str(e)])
    return 0
