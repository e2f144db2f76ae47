"""Mozilla Common Voice: one language of a release -> Kaldi data dirs train/dev/test.

Common Voice is downloaded by hand: its site asks each user to accept the
terms (and not to re-identify speakers) before it hands out a release. A
release unpacks to ``cv-corpus-<version>-<date>/<lang>/`` holding::

    clips/*.mp3                  the recordings (mono MP3, 32 or 48 kHz)
    train.tsv dev.tsv test.tsv   the official speaker-disjoint splits
    validated.tsv                every clip with enough up-votes (a superset)
    other.tsv invalidated.tsv ... (not used here)

Each ``.tsv`` is tab-separated with a header line; the columns differ between
releases (``client_id path sentence_id sentence sentence_domain up_votes
down_votes age gender accents variant locale segment`` in recent ones,
``client_id path sentence up_votes ...`` in older ones) and only ``client_id``,
``path`` and ``sentence`` are used. Rows are read with the ``csv`` module and
``QUOTE_NONE``: sentences hold bare quotes (``"``) that must stay text.

Per split this writes ``<out_dir>/<split>/{wav.scp,text,utt2spk,spk2utt}``:

* utterance id ``<client_id>-<clip stem>``: the speaker id (``client_id``) is
  a prefix of its utterance ids, so sorting by utterance id keeps each
  speaker's utterances together (as Kaldi's ``utt2spk`` / ``spk2utt`` need);
* ``wav.scp`` points at the MP3 itself; stage 2 (``format_data``) decodes it
  with soundfile (libsndfile >= 1.1 reads MP3) and writes a wav at ``--fs``;
* ``text`` is the sentence after the ``--text_norm`` normaliser (``az``:
  ``echo_plugin.text.azerbaijani``).

Faults (a missing column, a row too short or too long, an empty client_id or
path, a clip missing from ``clips/``, a sentence empty after normalisation, a
duplicate utterance, a clip listed under two client_ids, a clip whose audio
cannot be decoded) are reported as ``<tsv>:<line>: ...``, one line each; any
fault stops the preparation unless ``skip_bad_rows`` is set, which drops those
rows with a one-line warning each. Output dirs are replaced atomically: a failed
run leaves none half written.

Every clip is decoded once here (``load_audio``, about a millisecond per clip), so
that a corrupt or zero-byte MP3 is a fault of its tsv line in stage 1, which
``skip_bad_rows`` can drop, rather than a stop in stage 2. A clip path is used
once per run: the same clip under a second client_id (or again in another split)
is a fault of the later row; ``skip_bad_rows`` keeps the first. Splits are read
dev, test, then train, so the evaluation sets keep such a clip.

``train_tsv="validated"`` trains on every validated clip whose speaker and
normalised sentence occur in neither dev nor test (more data than ``train.tsv``
for small languages, still disjoint from the evaluation sets).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from echo_plugin.data.cli import run_corpus_cli
from echo_plugin.inference.audio import AudioError, load_audio
from echo_plugin.recipe import io
from echo_plugin.recipe.data_dir import MAX_FAULTS
from echo_plugin.text import TEXT_NORMALIZERS, get_normalizer
from echo_plugin.text.azerbaijani import foreign_letters

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("client_id", "path", "sentence")
SPLITS = ("train", "dev", "test")
TRAIN_SOURCES = ("train", "validated")
DOWNLOAD_HELP = (
    "Common Voice cannot be downloaded by a script: accept the terms at "
    "https://commonvoice.mozilla.org/datasets, download the language's release "
    "(e.g. 'Azerbaijani'), unpack it, and pass the folder holding clips/ and train.tsv "
    "(cv-corpus-<version>/<lang>) as --cv_root"
)


class CommonVoiceError(ValueError):
    """Faults in a Common Voice release, one line each naming the tsv line."""

    def __init__(self, faults: Sequence[str]):
        shown = list(faults[:MAX_FAULTS])
        if len(faults) > MAX_FAULTS:
            shown.append(f"... and {len(faults) - MAX_FAULTS} more faults")
        super().__init__("\n".join(shown))
        self.faults = list(faults)


@dataclass(frozen=True)
class ClipRow:
    """One row of a split tsv, with the place it was read from."""

    tsv: Path
    lineno: int
    client_id: str
    path: str
    sentence: str

    @property
    def where(self) -> str:
        return f"{self.tsv}:{self.lineno}"

    @property
    def utt_id(self) -> str:
        return f"{self.client_id}-{Path(self.path).stem}"


@dataclass(frozen=True)
class Utterance(io.Utterance):
    """One prepared utterance (its ``audio`` is the clip's Path) and the tsv line it came from."""

    where: str = field(default="", compare=False)  # for fault reports


def find_release_dir(cv_root: Path, lang: str | None = None) -> Path:
    """The folder holding ``clips/`` and the split tsvs: ``cv_root`` or ``cv_root/<lang>``."""
    cv_root = Path(cv_root)
    candidates = [cv_root] + ([cv_root / lang] if lang else [])
    for folder in candidates:
        if (folder / "clips").is_dir() and (folder / "train.tsv").is_file():
            return folder
    looked = " or ".join(repr(str(c)) for c in candidates)
    raise FileNotFoundError(f"no Common Voice release (clips/ and train.tsv) in {looked}. {DOWNLOAD_HELP}")


def read_cv_tsv(tsv: Path) -> tuple[list[ClipRow], list[str]]:
    """Rows of a Common Voice tsv and the faults of the rows that could not be read."""
    if not tsv.is_file():
        raise FileNotFoundError(f"missing {tsv}. {DOWNLOAD_HELP}")
    rows: list[ClipRow] = []
    faults: list[str] = []
    with open(tsv, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise CommonVoiceError([f"{tsv}:1: empty file, expected a header line"])
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise CommonVoiceError([f"{tsv}:1: header lacks column(s) {missing}; header is {header}"])
        index = {c: header.index(c) for c in REQUIRED_COLUMNS}
        for fields in reader:
            lineno = reader.line_num
            if not any(field.strip() for field in fields):
                continue
            problem = _row_problem(fields, header, index)
            if problem:
                faults.append(f"{tsv}:{lineno}: {problem}")
                continue
            values = {c: fields[i].strip() for c, i in index.items()}
            rows.append(ClipRow(tsv, lineno, values["client_id"], values["path"], values["sentence"]))
    return rows, faults


def _row_problem(fields: list[str], header: list[str], index: dict[str, int]) -> str | None:
    """Why a tsv row cannot be used, or None."""
    if len(fields) > len(header):
        return f"{len(fields)} tab-separated fields but the header has {len(header)} (a tab inside a field?)"
    absent = [c for c, i in index.items() if i >= len(fields)]
    if absent:
        return f"only {len(fields)} fields, no {absent} column(s)"
    for column in ("client_id", "path"):
        value = fields[index[column]].strip()
        if not value:
            return f"empty {column}"
        if any(ch.isspace() for ch in value) or "/" in value:
            return f"{column} {value!r} holds whitespace or '/', which a Kaldi id or clip name cannot"
    return None


def row_utterance(row: ClipRow, clips: Path, normalize: Callable[[str], str]) -> Utterance | str:
    """The utterance of a row, or a fault naming the tsv line."""
    clip = clips / row.path
    if not clip.is_file() and not Path(row.path).suffix and (clips / f"{row.path}.mp3").is_file():
        clip = clips / f"{row.path}.mp3"  # some older releases list clip names without the extension
    if not clip.is_file():
        return f"{row.where}: clip {row.path!r} not found in {clips}"
    text = normalize(row.sentence)
    if not text:
        return f"{row.where}: empty sentence (after normalisation of {row.sentence!r})"
    return Utterance(row.utt_id, row.client_id, text, clip.absolute(), where=row.where)


def collect_split(
    rows: Iterable[ClipRow], clips: Path, normalize: Callable[[str], str],
    clip_rows: dict[Path, ClipRow] | None = None,
) -> tuple[list[Utterance], list[str]]:
    """Utterances of a split's rows, and the faults of the rows that were left out.

    ``clip_rows`` (clip file -> the row that first used it) is shared between the
    splits of a run, so that a clip is used once: a later row naming the same clip
    under another client_id, or again in another split, is a fault.
    """
    utts: list[Utterance] = []
    faults: list[str] = []
    first: dict[str, ClipRow] = {}
    clip_rows = {} if clip_rows is None else clip_rows
    for row in rows:
        if row.utt_id in first:
            faults.append(f"{row.where}: duplicate utterance {row.utt_id} (first at {first[row.utt_id].where})")
            continue
        result = row_utterance(row, clips, normalize)
        if isinstance(result, str):
            faults.append(result)
            continue
        earlier = clip_rows.get(Path(result.audio))
        if earlier is not None:
            if earlier.client_id != row.client_id:
                faults.append(f"{row.where}: clip {row.path!r} is listed under client_id {row.client_id} here "
                              f"and under client_id {earlier.client_id} at {earlier.where}")
            else:
                faults.append(f"{row.where}: duplicate utterance {row.utt_id} (first at {earlier.where})")
            continue
        first[row.utt_id] = row
        clip_rows[Path(result.audio)] = row
        utts.append(result)
    return utts, faults


@contextlib.contextmanager
def _c_stderr_held() -> Iterator[None]:
    """File descriptor 2 into a scratch file and back: libmpg123 prints notes on a bad MP3
    ("Illegal Audio-MPEG-Header ...") beside the error soundfile raises, which already names the file."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2: nothing to hold back
        yield
        return
    try:
        with tempfile.TemporaryFile() as scratch:
            os.dup2(scratch.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def check_audio(utts: Sequence[Utterance]) -> tuple[list[Utterance], list[str]]:
    """``utts`` whose clip decodes (``load_audio``: not missing, readable, not empty), and one fault
    per other clip, naming its tsv line and the file."""
    good: list[Utterance] = []
    faults: list[str] = []
    with _c_stderr_held():
        for utt in utts:
            clip = Path(utt.audio)
            if clip.is_file() and clip.stat().st_size == 0:  # libsndfile's message would not say so
                faults.append(f"{utt.where}: empty audio file {clip} (0 bytes)")
                continue
            try:
                load_audio(clip)
            except AudioError as err:
                message = " ".join(str(err).splitlines())
                if "File does not exist or is not a regular file" in message and clip.is_file():
                    # libsndfile's words when no format it knows matches the bytes of an existing file
                    message = f"unreadable audio file {clip}: no audio format recognised (corrupt or not audio)"
                faults.append(f"{utt.where}: {message}")
                continue
            good.append(utt)
    return good, faults


def held_out(rows: Iterable[ClipRow], dev_test: Sequence[Utterance], normalize: Callable[[str], str]) -> list[ClipRow]:
    """``rows`` less those whose speaker or normalised sentence is in dev/test."""
    speakers = {u.speaker for u in dev_test}
    texts = {u.text for u in dev_test}
    return [r for r in rows if r.client_id not in speakers and normalize(r.sentence) not in texts]


def check_mp3_support(utts: Iterable[Utterance]) -> None:
    """RuntimeError when MP3 clips are listed but this libsndfile cannot decode MP3."""
    if "MP3" in sf.available_formats():
        return
    first = next((u for u in utts if Path(u.audio).suffix.lower() == ".mp3"), None)
    if first is not None:
        raise RuntimeError(
            f"{first.utt_id}: {first.audio} is MP3, which libsndfile {sf.__libsndfile_version__} cannot decode; "
            "install soundfile >= 0.12 (its wheels bundle libsndfile >= 1.1 with MP3)"
        )


def report_speaker_overlap(splits: dict[str, list[Utterance]]) -> None:
    """Warn when an evaluation speaker also speaks in train (Common Voice's splits avoid it)."""
    train = {u.speaker for u in splits.get("train", [])}
    for name in ("dev", "test"):
        shared = train & {u.speaker for u in splits.get(name, [])}
        if shared:
            log.warning("%d %s speaker(s) also speak in train", len(shared), name)


def report_foreign_letters(splits: dict[str, list[Utterance]]) -> None:
    """Log letters outside the Azerbaijani alphabet, with counts (for the az normaliser)."""
    counts = Counter(c for utts in splits.values() for u in utts for c in foreign_letters(u.text))
    if counts:
        log.info("letters outside the Azerbaijani alphabet: %s", dict(counts.most_common(20)))


def prepare_commonvoice(
    cv_root: Path,
    out_dir: Path,
    text_norm: str = "az",
    train_tsv: str = "train",
    skip_bad_rows: bool = False,
    lang: str | None = None,
) -> dict[str, Path]:
    """Write ``out_dir/{train,dev,test}`` from a Common Voice release; returns split -> dir.

    Raises FileNotFoundError for a missing release or tsv, CommonVoiceError
    listing faulty tsv lines (unless ``skip_bad_rows``; a clip whose audio does
    not decode is one), RuntimeError when MP3 cannot be decoded here at all.
    """
    if train_tsv not in TRAIN_SOURCES:
        raise ValueError(f"train_tsv must be one of {TRAIN_SOURCES}, got {train_tsv!r}")
    normalize = get_normalizer(text_norm)
    release = find_release_dir(cv_root, lang)
    clips = release / "clips"
    splits: dict[str, list[Utterance]] = {}
    faults: list[str] = []
    clip_rows: dict[Path, ClipRow] = {}
    for name in ("dev", "test", "train"):
        rows, row_faults = read_cv_tsv(release / f"{train_tsv if name == 'train' else name}.tsv")
        if name == "train" and train_tsv == "validated":
            rows = held_out(rows, splits["dev"] + splits["test"], normalize)
        splits[name], split_faults = collect_split(rows, clips, normalize, clip_rows)
        faults += row_faults + split_faults
    check_mp3_support(u for utts in splits.values() for u in utts)
    log.info("decoding %d clips to check them", sum(len(utts) for utts in splits.values()))
    for name in ("dev", "test", "train"):
        splits[name], audio_faults = check_audio(splits[name])
        faults += audio_faults
    if faults:
        if not skip_bad_rows:
            raise CommonVoiceError(faults)
        for line in faults:
            log.warning("skipped %s", line)
    for name in SPLITS:
        if not splits[name]:
            raise CommonVoiceError([f"{release}: no usable rows for {name}"])
    report_speaker_overlap(splits)
    if text_norm == "az":
        report_foreign_letters(splits)
    dirs = {}
    for name in SPLITS:
        dirs[name] = Path(out_dir) / name
        io.write_data_dir(dirs[name], splits[name])
    return dirs


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Common Voice release -> Kaldi data dirs train/dev/test. " + DOWNLOAD_HELP + ".")
    p.add_argument("--cv_root", type=Path, required=True, help="release folder holding clips/ and train.tsv")
    p.add_argument("--out_dir", type=Path, default=Path("data"), help="where train/ dev/ test/ go (%(default)s)")
    p.add_argument("--lang", default=None, help="language code: also look in <cv_root>/<lang>")
    p.add_argument("--text_norm", default="az", choices=sorted(TEXT_NORMALIZERS),
                   help="transcript normaliser (%(default)s)")
    p.add_argument("--train_tsv", default="train", choices=TRAIN_SOURCES,
                   help="train on train.tsv, or on validated.tsv less dev/test speakers and sentences (%(default)s)")
    p.add_argument("--skip_bad_rows", action="store_true",
                   help="drop faulty rows (unreadable clip, clip under two client_ids, ...) with a one-line "
                        "warning each instead of failing")
    return p


def dirs_from_args(args: argparse.Namespace) -> dict[str, Path]:
    """Prepare the data dirs the options describe; split name -> its dir."""
    return prepare_commonvoice(args.cv_root, args.out_dir, args.text_norm, args.train_tsv, args.skip_bad_rows,
                               args.lang)


def summary(args: argparse.Namespace, dirs: dict[str, Path]) -> Iterator[str]:
    """One line per split: its utterances and speakers."""
    for name, path in dirs.items():
        n_utts = len((path / "text").read_text(encoding="utf-8").splitlines())
        n_spk = len((path / "spk2utt").read_text(encoding="utf-8").splitlines())
        yield f"{name}\t{n_utts} utterances\t{n_spk} speakers"


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare the data dirs and print utterances and speakers per split."""
    return run_corpus_cli(build_parser(), argv, dirs_from_args, summary, (ValueError, FileNotFoundError, RuntimeError))


if __name__ == "__main__":
    sys.exit(main())
