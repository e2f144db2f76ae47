"""Free Spoken Digit Dataset (FSDD): download, speaker-disjoint splits, Kaldi data dirs.

Recordings are ``recordings/{digit}_{speaker}_{index}.wav`` (mono, 8 kHz). The
preparation writes four Kaldi-style data dirs under ``out_dir``:

* ``train``, ``dev``: the split's isolated recordings plus connected-digit
  utterances composed from them;
* ``test_isolated``: the test speakers' isolated recordings;
* ``test_connected``: connected-digit utterances of the test speakers.

Splits are speaker-disjoint. By default train = george, jackson, yweweler;
dev = nicolas; test = lucas. Any speaker found in the corpus but named in none
of the three lists (e.g. the sixth speaker of the full upstream corpus) goes to
test, so a speaker the lists do not know is only ever tested on, never trained
or tuned on.

A connected-digit utterance takes 3 to 7 random digits, each a random take by
ONE speaker of the split, joined with random silent gaps. Its composition
(sources and gap lengths in samples) is written to ``composition.jsonl`` next to
its wavs. Everything is drawn from a seeded RNG: the same arguments give the
same bytes on every run.

The recordings are checked against the SHA-256 manifest shipped with the package
(:mod:`echo_plugin.data.fsdd_manifest`): after a download, before the extracted copy
is moved into place, and on the corpus root every time the command line prepares
from it (stage 1), unless ``--skip_checksum`` (a copy changed on purpose).

Run ``python -m echo_plugin.data.fsdd --help`` for the command line.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from echo_plugin.data.cli import run_corpus_cli
from echo_plugin.data.fsdd_manifest import verify_recordings
from echo_plugin.inference.audio import AudioError, load_audio
from echo_plugin.recipe.io import Utterance, atomic_dir, fetch, is_current, replace_dir, write_data_dir, write_stamp

log = logging.getLogger(__name__)

PINNED_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"
URL_TEMPLATE = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/{commit}.tar.gz"
# No SHA-256 of the pinned archive is known (GitHub builds archives on request, so their bytes may
# change): the download is checked by its content instead, each recording against the shipped manifest
# (fsdd_manifest) and every speaker, digit and take present, every file 8 kHz mono (check_corpus).
PINNED_SHA256: str | None = None
SAMPLE_RATE = 8000
DIGIT_WORDS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
DATA_DIRS = ("train", "dev", "test_isolated", "test_connected")
KALDI_FILES = ("wav.scp", "text", "utt2spk", "spk2utt")
COMPOSITION_FILE = "composition.jsonl"
STAMP_VERSION = 1

_NAME_RE = re.compile(r"(?P<digit>[0-9])_(?P<speaker>[a-z][a-z0-9]*)_(?P<index>0|[1-9][0-9]*)\.wav")
_CHECKED_STAMP = ".fsdd_checked.json"


@dataclass(frozen=True, order=True)
class Recording:
    """One isolated FSDD recording; sorts by speaker, digit, take."""

    speaker: str
    digit: int
    index: int
    path: Path = field(compare=False)

    @property
    def utt_id(self) -> str:
        """Kaldi utterance id, prefixed by the speaker id."""
        return f"{self.speaker}-iso-{self.digit}-{self.index:02d}"


@dataclass(frozen=True)
class ConnectedUtterance:
    """A connected-digit utterance: source recordings and the silences around them.

    ``gaps`` holds ``len(sources) + 1`` silence lengths in samples: leading,
    one between each pair of sources, trailing.
    """

    utt_id: str
    speaker: str
    sources: tuple[Recording, ...]
    gaps: tuple[int, ...]

    @property
    def text(self) -> str:
        """Transcript: one upper-case word per source digit."""
        return " ".join(DIGIT_WORDS[r.digit] for r in self.sources)


@dataclass(frozen=True)
class PrepConfig:
    """Everything that decides the content of the prepared data dirs."""

    train_speakers: tuple[str, ...] = ("george", "jackson", "yweweler")
    dev_speakers: tuple[str, ...] = ("nicolas",)
    test_speakers: tuple[str, ...] = ("lucas",)
    n_connected_train: int = 1500
    n_connected_dev: int = 200
    n_connected_test: int = 300
    seed: int = 0
    max_takes: int | None = None
    min_digits: int = 3
    max_digits: int = 7
    min_gap_ms: int = 50
    max_gap_ms: int = 250
    max_edge_ms: int = 100
    extra_train_root: str | None = None
    n_connected_extra_train: int = 0

    def __post_init__(self) -> None:
        _check_config(self)


def _check_config(cfg: PrepConfig) -> None:
    """Raise ValueError on an inconsistent configuration."""
    lists = {"train": cfg.train_speakers, "dev": cfg.dev_speakers, "test": cfg.test_speakers}
    for split in ("train", "dev"):
        if not lists[split]:
            raise ValueError(f"no {split} speakers given")
    seen: dict[str, str] = {}
    for split, speakers in lists.items():
        for spk in speakers:
            if spk in seen:
                raise ValueError(f"speaker {spk!r} is listed for both {seen[spk]} and {split}")
            seen[spk] = split
    for name in ("n_connected_train", "n_connected_dev", "n_connected_test"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.n_connected_extra_train < 0:
        raise ValueError(f"n_connected_extra_train must be >= 0, got {cfg.n_connected_extra_train}")
    if cfg.n_connected_extra_train and cfg.extra_train_root is None:
        raise ValueError("n_connected_extra_train needs extra_train_root")
    if cfg.max_takes is not None and cfg.max_takes < 1:
        raise ValueError(f"max_takes must be at least 1, got {cfg.max_takes}")
    if not 1 <= cfg.min_digits <= cfg.max_digits:
        raise ValueError(f"need 1 <= min_digits <= max_digits, got {cfg.min_digits}, {cfg.max_digits}")
    if not 0 <= cfg.min_gap_ms <= cfg.max_gap_ms:
        raise ValueError(f"need 0 <= min_gap_ms <= max_gap_ms, got {cfg.min_gap_ms}, {cfg.max_gap_ms}")
    if cfg.max_edge_ms < 0:
        raise ValueError(f"max_edge_ms must be >= 0, got {cfg.max_edge_ms}")


# ----------------------------------------------------------------------------- corpus


def parse_recording_name(path: Path) -> Recording:
    """Parse ``{digit}_{speaker}_{index}.wav``; ValueError naming the file if it does not fit."""
    match = _NAME_RE.fullmatch(path.name)
    if match is None:
        raise ValueError(
            f"cannot parse FSDD file name {str(path)!r}: expected '{{digit}}_{{speaker}}_{{index}}.wav' "
            "with a digit 0-9, a lower-case speaker name and a take number without leading zeros"
        )
    return Recording(match["speaker"], int(match["digit"]), int(match["index"]), path.resolve())


def find_recordings(root: Path) -> list[Recording]:
    """All recordings in ``root/recordings``, sorted by speaker, digit and take."""
    folder = Path(root) / "recordings"
    if not folder.is_dir():
        raise FileNotFoundError(f"no FSDD 'recordings' folder in {str(root)!r}")
    recordings = sorted(parse_recording_name(p) for p in folder.glob("*.wav"))
    if not recordings:
        raise FileNotFoundError(f"no .wav recordings in {str(folder)!r}")
    return recordings


def check_corpus(root: Path, n_speakers: int = 6, n_digits: int = 10, n_takes: int = 50) -> None:
    """Check a full corpus: every speaker has takes 0..n_takes-1 of digits 0..n_digits-1, all 8 kHz mono."""
    recordings = find_recordings(root)
    speakers = sorted({r.speaker for r in recordings})
    if len(speakers) != n_speakers:
        raise ValueError(f"{root}: expected {n_speakers} speakers, found {len(speakers)}: {speakers}")
    expected = {(s, d, i) for s in speakers for d in range(n_digits) for i in range(n_takes)}
    found = {(r.speaker, r.digit, r.index) for r in recordings}
    if found != expected:
        missing, extra = sorted(expected - found), sorted(found - expected)
        raise ValueError(
            f"{root}: expected {len(expected)} recordings ({n_speakers} speakers x {n_digits} digits x "
            f"{n_takes} takes), found {len(found)}; missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for rec in recordings:
        read_recording(rec.path, rec.utt_id)


def read_recording(path: Path, utt_id: str) -> np.ndarray:
    """Samples (N,) float32 of an 8 kHz mono recording; AudioError (a ValueError) naming utterance and file
    when it is missing, unreadable, empty, truncated or not 8 kHz mono."""
    try:
        samples, rate = load_audio(path)
    except AudioError as err:
        raise AudioError(f"{utt_id}: {err}") from None
    if rate != SAMPLE_RATE or samples.shape[1] != 1:
        raise AudioError(
            f"{utt_id}: {str(path)!r} is {rate} Hz with {samples.shape[1]} channel(s), expected {SAMPLE_RATE} Hz mono"
        )
    return samples[:, 0]


def assign_splits(speakers: Iterable[str], cfg: PrepConfig) -> dict[str, str]:
    """Map each speaker to 'train', 'dev' or 'test'; unlisted speakers go to 'test'."""
    speakers = sorted(set(speakers))
    listed = {"train": cfg.train_speakers, "dev": cfg.dev_speakers, "test": cfg.test_speakers}
    for split, names in listed.items():
        absent = sorted(set(names) - set(speakers))
        if absent:
            raise ValueError(f"{split} speaker(s) {absent} have no recordings; speakers found: {speakers}")
    split_of = {spk: split for split, names in listed.items() for spk in names}
    return {spk: split_of.get(spk, "test") for spk in speakers}


# ----------------------------------------------------------------------------- connected digits


def plan_connected(
    recordings: Sequence[Recording], n: int, cfg: PrepConfig, rng: random.Random
) -> list[ConnectedUtterance]:
    """Draw ``n`` connected utterances; speakers take turns, each utterance uses one speaker."""
    takes: dict[str, dict[int, list[Recording]]] = {}
    for rec in sorted(recordings):
        takes.setdefault(rec.speaker, {}).setdefault(rec.digit, []).append(rec)
    speakers = sorted(takes)
    ms = SAMPLE_RATE // 1000
    plans = []
    for k in range(n):
        speaker = speakers[k % len(speakers)]
        by_digit = takes[speaker]
        digits = [rng.choice(sorted(by_digit)) for _ in range(rng.randint(cfg.min_digits, cfg.max_digits))]
        sources = tuple(rng.choice(by_digit[d]) for d in digits)
        inner = [rng.randint(cfg.min_gap_ms * ms, cfg.max_gap_ms * ms) for _ in sources[1:]]
        lead, trail = (rng.randint(0, cfg.max_edge_ms * ms) for _ in range(2))
        plans.append(ConnectedUtterance(f"{speaker}-conn-{k:05d}", speaker, sources, (lead, *inner, trail)))
    return plans


def read_source(rec: Recording, utt_id: str) -> np.ndarray:
    """Samples (int16) of a source recording; AudioError naming utterance and file if not 8 kHz mono."""
    samples = read_recording(rec.path, utt_id)  # 16-bit PCM decodes to k / 32768 exactly
    return np.clip(np.rint(samples * 32768.0), -32768, 32767).astype(np.int16)


def render_connected(plan: ConnectedUtterance, read: Callable[[Recording, str], np.ndarray]) -> np.ndarray:
    """Concatenate the plan's sources with zero-valued silences between and around them."""
    pieces = [np.zeros(plan.gaps[0], dtype=np.int16)]
    for rec, gap in zip(plan.sources, plan.gaps[1:]):
        pieces += [read(rec, plan.utt_id), np.zeros(gap, dtype=np.int16)]
    return np.concatenate(pieces)


def write_connected(plans: Sequence[ConnectedUtterance], tmp_dir: Path, final_dir: Path) -> list[Utterance]:
    """Write wavs and composition.jsonl into ``tmp_dir``; utterances point at ``final_dir``."""
    cache: dict[Path, np.ndarray] = {}

    def read(rec: Recording, utt_id: str) -> np.ndarray:
        if rec.path not in cache:
            cache[rec.path] = read_source(rec, utt_id)
        return cache[rec.path]

    utts, lines = [], []
    for plan in plans:
        audio = render_connected(plan, read)
        sf.write(str(tmp_dir / f"{plan.utt_id}.wav"), audio, SAMPLE_RATE, subtype="PCM_16")
        utts.append(Utterance(plan.utt_id, plan.speaker, plan.text, final_dir / f"{plan.utt_id}.wav"))
        lines.append(json.dumps({
            "utt_id": plan.utt_id,
            "text": plan.text,
            "sources": [str(r.path) for r in plan.sources],
            "gaps": list(plan.gaps),
            "num_samples": len(audio),
        }))
    (tmp_dir / COMPOSITION_FILE).write_text("".join(line + "\n" for line in lines))
    return utts


# ----------------------------------------------------------------------------- Kaldi data dirs


def isolated_utterances(recordings: Iterable[Recording]) -> list[Utterance]:
    """One utterance per recording, checked to be 8 kHz mono."""
    utts = []
    for rec in recordings:
        read_recording(rec.path, rec.utt_id)
        utts.append(Utterance(rec.utt_id, rec.speaker, DIGIT_WORDS[rec.digit], rec.path))
    return utts


# ----------------------------------------------------------------------------- preparation


def _stamp_content(fsdd_root: Path, wav_dir: Path, cfg: PrepConfig) -> dict:
    """What the stamp file records: the inputs that decide the output."""
    content: dict = {
        "version": STAMP_VERSION,
        "fsdd_root": str(fsdd_root.resolve()),
        "wav_dir": str(wav_dir.resolve()),
        "config": asdict(cfg),
    }
    if cfg.extra_train_root is not None:  # a regenerated extra corpus must rebuild the dirs
        folder = Path(cfg.extra_train_root) / "recordings"
        files = sorted(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in folder.glob("*.wav"))
        content["extra_train_files"] = hashlib.sha256("\n".join(files).encode()).hexdigest()
    return content


def _stamp_path(out_dir: Path) -> Path:
    return out_dir / "local" / "fsdd_prep.json"


def _is_complete(out_dir: Path, stamp: dict) -> bool:
    """True if the stamp matches and every data dir file and every wav it lists exists."""
    if not is_current(_stamp_path(out_dir), stamp):
        return False
    for name in DATA_DIRS:
        if not all((out_dir / name / f).is_file() for f in KALDI_FILES):
            return False
        for line in (out_dir / name / "wav.scp").read_text().splitlines():
            if not Path(line.split(maxsplit=1)[1]).is_file():
                return False
    return True


def prepare_fsdd(
    fsdd_root: Path, out_dir: Path = Path("data"), cfg: PrepConfig = PrepConfig(), wav_dir: Path | None = None
) -> dict[str, Path]:
    """Write the four data dirs (see module docstring); a complete run with the same inputs is a no-op.

    Connected-utterance wavs go to ``wav_dir/<data dir>/`` (default ``out_dir/local/connected_wav``).
    Returns data dir name -> path.
    """
    out_dir = Path(out_dir).resolve()
    wav_dir = Path(wav_dir).resolve() if wav_dir is not None else out_dir / "local" / "connected_wav"
    result = {name: out_dir / name for name in DATA_DIRS}
    stamp = _stamp_content(Path(fsdd_root), wav_dir, cfg)
    if _is_complete(out_dir, stamp):
        log.info("FSDD data dirs in %s are complete and up to date; nothing to do", out_dir)
        return result
    _stamp_path(out_dir).unlink(missing_ok=True)

    recordings = find_recordings(Path(fsdd_root))
    if cfg.max_takes is not None:
        recordings = [r for r in recordings if r.index < cfg.max_takes]
    split_of = assign_splits((r.speaker for r in recordings), cfg)
    by_split = {s: [r for r in recordings if split_of[r.speaker] == s] for s in ("train", "dev", "test")}
    if not by_split["test"]:
        raise ValueError("no test speakers: name one with test_speakers or leave a speaker unlisted")
    extra = _extra_train_recordings(cfg, split_of)

    layout = {  # data dir -> its parts: part name -> (isolated recordings, pool for connected, number of those)
        "train": {"train": (by_split["train"], by_split["train"], cfg.n_connected_train),
                  "train_extra": (extra, extra, cfg.n_connected_extra_train)},
        "dev": {"dev": (by_split["dev"], by_split["dev"], cfg.n_connected_dev)},
        "test_isolated": {"test_isolated": (by_split["test"], [], 0)},
        "test_connected": {"test_connected": ([], by_split["test"], cfg.n_connected_test)},
    }
    for name, parts in layout.items():
        utts: list[Utterance] = []
        for part, (isolated, pool, n_connected) in parts.items():
            utts += isolated_utterances(isolated)
            if n_connected:
                utts += _build_connected(part, pool, n_connected, cfg, wav_dir / part)
        write_data_dir(result[name], utts)
        log.info("wrote %s: %d utterances", result[name], len(utts))

    write_stamp(_stamp_path(out_dir), stamp)
    return result


def _extra_train_recordings(cfg: PrepConfig, split_of: dict[str, str]) -> list[Recording]:
    """Recordings of ``cfg.extra_train_root`` (training only); ValueError if a speaker is also in the corpus."""
    if cfg.extra_train_root is None:
        return []
    extra = find_recordings(Path(cfg.extra_train_root))
    shared = sorted({r.speaker for r in extra} & set(split_of))
    if shared:
        raise ValueError(f"extra training speaker(s) {shared} of {cfg.extra_train_root} are also FSDD speakers")
    return extra


def _build_connected(name: str, pool: Sequence[Recording], n: int, cfg: PrepConfig, final: Path) -> list[Utterance]:
    """Plan ``n`` connected utterances for data dir ``name`` and write their wavs to ``final``."""
    plans = plan_connected(pool, n, cfg, random.Random(f"fsdd-connected:{cfg.seed}:{name}"))
    with atomic_dir(final) as tmp:
        return write_connected(plans, tmp, final)


def summarize(data_dir: Path) -> tuple[int, float]:
    """Number of utterances and hours of audio in a data dir (from the wav headers)."""
    lines = (Path(data_dir) / "wav.scp").read_text().splitlines()
    samples = sum(sf.info(line.split(maxsplit=1)[1]).frames for line in lines)
    return len(lines), samples / SAMPLE_RATE / 3600


# ----------------------------------------------------------------------------- download


def download_fsdd(
    dest: Path,
    commit: str = PINNED_COMMIT,
    url_template: str = URL_TEMPLATE,
    n_speakers: int = 6,
    n_takes: int = 50,
    sha256: str | None = PINNED_SHA256,
    manifest: dict[str, str] | None = None,
) -> Path:
    """Download and check the upstream archive of ``commit``; return the folder holding ``recordings/``.

    Skips the download when a checked copy is already in ``dest``. The archive (its
    SHA-256 verified when ``sha256`` is given) is extracted into a temporary folder
    (members that would land outside it are refused), checked against the recordings'
    SHA-256 manifest (default: the shipped one; ``{}`` checks none) and with
    :func:`check_corpus`, and only then moved into place. The download and resume are
    :func:`echo_plugin.recipe.io.fetch`'s.
    """
    dest = Path(dest).resolve()
    root = dest / f"free-spoken-digit-dataset-{commit}"
    expected = {"commit": commit, "n_speakers": n_speakers, "n_takes": n_takes}
    if is_current(root / _CHECKED_STAMP, expected):
        log.info("FSDD %s already downloaded and checked in %s", commit, root)
        return root
    dest.mkdir(parents=True, exist_ok=True)
    archive = fetch(url_template.format(commit=commit), dest / f"{commit}.tar.gz", sha256)
    tmp = Path(tempfile.mkdtemp(prefix=".fsdd-extract-", dir=dest))
    try:
        extracted = _extract_single_root(archive, tmp)
        verify_recordings(extracted, manifest)
        check_corpus(extracted, n_speakers=n_speakers, n_takes=n_takes)
        write_stamp(extracted / _CHECKED_STAMP, expected)
        replace_dir(extracted, root)
    except (ValueError, FileNotFoundError, tarfile.TarError) as err:
        archive.unlink()
        raise ValueError(f"bad FSDD archive from {url_template.format(commit=commit)}: {err}") from err
    finally:
        shutil.rmtree(tmp)
    archive.unlink()
    return root


def _extract_single_root(archive: Path, into: Path) -> Path:
    """Extract into ``into`` (nothing may land outside it) and return the archive's one top-level folder."""
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(into, filter="data")  # refuses absolute paths, '..', links out, device files
    tops = list(into.iterdir())
    if len(tops) != 1 or not tops[0].is_dir():
        raise ValueError(f"expected one top-level folder in the archive, found {[p.name for p in tops]}")
    return tops[0]


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python -m echo_plugin.data.fsdd``."""
    d = PrepConfig()
    p = argparse.ArgumentParser(
        prog="python -m echo_plugin.data.fsdd",
        description="Prepare FSDD Kaldi-style data dirs: train, dev, test_isolated, test_connected.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fsdd_root", type=Path, help="folder holding recordings/")
    src.add_argument("--download_dir", type=Path, help=f"download upstream commit {PINNED_COMMIT[:10]} here first")
    p.add_argument("--skip_checksum", action="store_true",
                   help="do not check the recordings against the package's SHA-256 manifest (a copy you changed)")
    p.add_argument("--out_dir", type=Path, default=Path("data"), help="where the data dirs go (%(default)s)")
    p.add_argument("--wav_dir", type=Path, help="connected-digit wavs (<out_dir>/local/connected_wav)")
    p.add_argument("--train_speakers", nargs="+", default=list(d.train_speakers), help="(%(default)s)")
    p.add_argument("--dev_speakers", nargs="+", default=list(d.dev_speakers), help="(%(default)s)")
    p.add_argument("--test_speakers", nargs="*", default=None,
                   help=f"({' '.join(d.test_speakers)} unless a train or dev speaker); "
                   "speakers in no list go to test too")
    p.add_argument("--n_connected_train", type=int, default=d.n_connected_train, help="(%(default)s)")
    p.add_argument("--n_connected_dev", type=int, default=d.n_connected_dev, help="(%(default)s)")
    p.add_argument("--n_connected_test", type=int, default=d.n_connected_test, help="(%(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the connected utterances (%(default)s)")
    p.add_argument("--max_takes", type=int, help="keep takes with index < N per speaker and digit (all)")
    p.add_argument("--min_digits", type=int, default=d.min_digits, help="digits per connected utterance (%(default)s)")
    p.add_argument("--max_digits", type=int, default=d.max_digits, help="(%(default)s)")
    p.add_argument("--min_gap_ms", type=int, default=d.min_gap_ms, help="silence between digits (%(default)s)")
    p.add_argument("--max_gap_ms", type=int, default=d.max_gap_ms, help="(%(default)s)")
    p.add_argument("--max_edge_ms", type=int, default=d.max_edge_ms,
                   help="leading and trailing silence, each up to this (%(default)s)")
    p.add_argument("--extra_train_root", help="folder with FSDD-named recordings/ added to train only "
                   "(e.g. echo_plugin.data.synthetic_digits output)")
    p.add_argument("--n_connected_extra_train", type=int, default=d.n_connected_extra_train,
                   help="connected utterances composed from the extra speakers (%(default)s)")
    return p


def config_from_args(args: argparse.Namespace) -> PrepConfig:
    """PrepConfig from parsed command-line options."""
    return PrepConfig(
        train_speakers=tuple(args.train_speakers),
        dev_speakers=tuple(args.dev_speakers),
        test_speakers=tuple(args.test_speakers) if args.test_speakers is not None else tuple(
            s for s in PrepConfig.test_speakers if s not in {*args.train_speakers, *args.dev_speakers}),
        n_connected_train=args.n_connected_train,
        n_connected_dev=args.n_connected_dev,
        n_connected_test=args.n_connected_test,
        seed=args.seed,
        max_takes=args.max_takes,
        min_digits=args.min_digits,
        max_digits=args.max_digits,
        min_gap_ms=args.min_gap_ms,
        max_gap_ms=args.max_gap_ms,
        max_edge_ms=args.max_edge_ms,
        extra_train_root=str(Path(args.extra_train_root).resolve()) if args.extra_train_root else None,
        n_connected_extra_train=args.n_connected_extra_train,
    )


def prepare_from_args(args: argparse.Namespace) -> dict[str, Path]:
    """The data dirs of the parsed options (downloading FSDD when no ``--fsdd_root`` is given); the corpus
    root's recordings are checked against the SHA-256 manifest first unless ``--skip_checksum``."""
    cfg = config_from_args(args)
    manifest = {} if args.skip_checksum else None  # {}: nothing to check
    root = args.fsdd_root if args.fsdd_root is not None else download_fsdd(args.download_dir, manifest=manifest)
    if not args.skip_checksum:
        n = verify_recordings(root)
        log.info("%s: %d recordings match the package's SHA-256 manifest", root, n)
    return prepare_fsdd(root, args.out_dir, cfg, args.wav_dir)


def summary(args: argparse.Namespace, dirs: dict[str, Path]) -> Iterator[str]:
    """Utterances and hours per prepared dir."""
    for name, path in dirs.items():
        n_utts, hours = summarize(path)
        yield f"{name}\t{n_utts} utterances\t{hours:.3f} h"


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare the data dirs and print utterances and hours per dir."""
    return run_corpus_cli(build_parser(), argv, prepare_from_args, summary, (ValueError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main())
