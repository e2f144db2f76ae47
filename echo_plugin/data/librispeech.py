"""LibriSpeech (openslr resource 12): download, checksum, Kaldi data dirs.

Upstream layout, once the archives are extracted into one folder::

    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
    LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt

Each line of a ``.trans.txt`` is ``<speaker>-<chapter>-<utt> WORDS ...``
(upper case, apostrophes kept). :func:`prepare_librispeech` writes one Kaldi
data dir per subset (``train-clean-100`` -> ``train_clean_100``) holding
``wav.scp`` (absolute ``.flac`` paths, read in place by soundfile), ``text``,
``utt2spk`` and ``spk2utt``; as Kaldi's and ESPnet's LibriSpeech recipes do,
the speaker id is ``<speaker>-<chapter>`` and ``dev`` is dev-clean plus
dev-other (the validation set of ESPnet's librispeech_100 recipe).

Every fault (a transcript line without audio, audio without a transcript line,
a file name not of the form above, an id whose speaker or chapter is not its
folder's, a duplicate id, an empty transcript) is reported naming the file;
all of them are collected and raised together as one ``ValueError``.

    python -m echo_plugin.data.librispeech --librispeech_root /data/LibriSpeech --out_dir data
    python -m echo_plugin.data.librispeech --download_dir downloads --out_dir data
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from echo_plugin.data.cli import run_corpus_cli
from echo_plugin.recipe.io import Utterance, fetch, write_data_dir

log = logging.getLogger(__name__)

BASE_URL = "https://www.openslr.org/resources/12"
SUBSETS = ("train-clean-100", "dev-clean", "dev-other", "test-clean", "test-other")
# MD5 of each archive as published by openslr in https://www.openslr.org/resources/12/md5sum.txt
# (linked from https://www.openslr.org/12/ as "MD5 checksums for the archive files"). That
# page could not be fetched from here; the values were read from public code that copies
# it (e.g. PaddleSpeech's dataset/librispeech/librispeech.py and several download
# scripts that cite md5sum.txt), all of which agree.
MD5 = {
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
}
COMBINED = {"dev": ("dev-clean", "dev-other")}  # extra data dirs made of several subsets
MAX_FAULTS = 50
_UTT_ID = re.compile(r"(\d+)-(\d+)-(\d+)")
_DONE = ".complete"


def data_dir_name(subset: str) -> str:
    """Kaldi data dir name of a subset: ``train-clean-100`` -> ``train_clean_100``."""
    return subset.replace("-", "_")


def find_corpus(root: Path) -> Path:
    """The ``LibriSpeech`` folder: ``root`` itself or ``root/LibriSpeech``."""
    root = Path(root)
    if (root / "LibriSpeech").is_dir():
        return root / "LibriSpeech"
    if root.is_dir():
        return root
    raise FileNotFoundError(f"no LibriSpeech corpus at {root}")


def read_transcripts(trans: Path, faults: list[str]) -> dict[str, str]:
    """``uttid -> words`` of one ``.trans.txt``; its faults (file:line: problem) go to ``faults``."""
    table: dict[str, str] = {}
    for lineno, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
        uttid, _, words = line.strip().partition(" ")
        if not uttid:
            continue
        words = " ".join(words.split())
        if uttid in table:
            faults.append(f"{trans}:{lineno}: utterance '{uttid}': duplicate transcript line")
        elif not words:
            faults.append(f"{trans}:{lineno}: utterance '{uttid}': empty transcript")
        else:
            table[uttid] = words
    return table


def chapter_utterances(chapter_dir: Path, faults: list[str]) -> list[Utterance]:
    """The utterances of ``<subset>/<speaker>/<chapter>/``, checking audio against the transcript."""
    speaker, chapter = chapter_dir.parent.name, chapter_dir.name
    trans = chapter_dir / f"{speaker}-{chapter}.trans.txt"
    audio = {p.stem: p for p in chapter_dir.glob("*.flac")}
    for path in sorted(audio.values()):
        match = _UTT_ID.fullmatch(path.stem)
        if match is None or match.group(1, 2) != (speaker, chapter):
            faults.append(f"{path}: not named {speaker}-{chapter}-<utt>.flac as its folder requires")
    if not trans.is_file():
        faults += [f"{path}: audio without transcript ({trans} is missing)" for path in sorted(audio.values())]
        return []
    words = read_transcripts(trans, faults)
    faults += [f"{audio[u]}: audio without transcript line in {trans}" for u in sorted(audio.keys() - words.keys())]
    faults += [f"{trans}: utterance '{u}': transcript line without audio ({chapter_dir / (u + '.flac')} is missing)"
               for u in sorted(words.keys() - audio.keys())]
    speaker_id = f"{speaker}-{chapter}"  # Kaldi's LibriSpeech speaker: <speaker>-<chapter>
    return [Utterance(u, speaker_id, words[u], audio[u].resolve()) for u in sorted(words.keys() & audio.keys())]


def subset_utterances(subset_dir: Path, faults: list[str]) -> list[Utterance]:
    """Every utterance of one subset folder, sorted by id; its faults go to ``faults``."""
    if not subset_dir.is_dir():
        raise FileNotFoundError(f"LibriSpeech subset folder missing: {subset_dir}")
    found = len(faults)
    utts: list[Utterance] = []
    for chapter_dir in sorted(p for p in subset_dir.glob("*/*") if p.is_dir()):
        utts += chapter_utterances(chapter_dir, faults)
    stray = sorted(subset_dir.glob("*.flac")) + sorted(subset_dir.glob("*/*.flac"))
    faults += [f"{p}: audio outside a <speaker>/<chapter>/ folder" for p in stray]
    if not utts and len(faults) == found:
        faults.append(f"{subset_dir}: no utterances (expected <speaker>/<chapter>/*.flac and *.trans.txt)")
    return sorted(utts, key=lambda u: u.utt_id)


def raise_faults(faults: list[str]) -> None:
    """ValueError listing the first MAX_FAULTS faults, one per line, when there are any."""
    if faults:
        more = [f"... and {len(faults) - MAX_FAULTS} more"] if len(faults) > MAX_FAULTS else []
        raise ValueError("\n".join(faults[:MAX_FAULTS] + more))


def scan_subset(subset_dir: Path) -> list[Utterance]:
    """Every utterance of one subset folder, sorted by id; ValueError listing every fault."""
    faults: list[str] = []
    utts = subset_utterances(subset_dir, faults)
    raise_faults(faults)
    return utts


def prepare_librispeech(
    root: Path, out_dir: Path, subsets: Iterable[str] = SUBSETS, combined: Mapping[str, Sequence[str]] = COMBINED
) -> dict[str, Path]:
    """Kaldi data dirs under ``out_dir`` for ``subsets`` of the corpus at ``root``, plus the
    ``combined`` ones whose parts are all among ``subsets``; returns name -> data dir."""
    corpus = find_corpus(root)
    faults: list[str] = []
    scanned = {subset: subset_utterances(corpus / subset, faults) for subset in subsets}
    raise_faults(faults)
    dirs: dict[str, Path] = {}
    for subset, utts in scanned.items():
        dirs[data_dir_name(subset)] = Path(out_dir) / data_dir_name(subset)
        write_data_dir(dirs[data_dir_name(subset)], utts)
    for name, parts in combined.items():
        if all(part in scanned for part in parts):
            dirs[name] = Path(out_dir) / name
            write_data_dir(dirs[name], [u for part in parts for u in scanned[part]])
    return dirs


# ----------------------------------------------------------------------------- download


def download_librispeech(
    dest: Path, subsets: Iterable[str] = SUBSETS, base_url: str = BASE_URL,
    checksums: Mapping[str, str] = MD5, keep_archives: bool = False,
) -> Path:
    """Download, MD5-check and extract ``subsets`` into ``dest/LibriSpeech``; returns that folder.

    A subset already extracted (marked by ``LibriSpeech/<subset>/.complete``) is skipped.
    Members that would land outside ``dest`` are refused (tarfile's ``data`` filter)."""
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    for subset in subsets:
        if subset not in checksums:
            raise ValueError(f"no published checksum for LibriSpeech subset '{subset}'")
        done = dest / "LibriSpeech" / subset / _DONE
        if done.is_file():
            log.info("%s already extracted in %s", subset, done.parent)
            continue
        archive = fetch(f"{base_url}/{subset}.tar.gz", dest / f"{subset}.tar.gz", md5=checksums[subset])
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest, filter="data")
        if not done.parent.is_dir():
            raise ValueError(f"{archive}: did not contain LibriSpeech/{subset}/")
        done.write_text(f"{checksums[subset]}\n")
        if not keep_archives:
            archive.unlink()
    return dest / "LibriSpeech"


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m echo_plugin.data.librispeech", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--librispeech_root", type=Path, help="folder holding LibriSpeech/ (or LibriSpeech itself)")
    src.add_argument("--download_dir", type=Path, help=f"download from {BASE_URL} here first")
    p.add_argument("--out_dir", type=Path, default=Path("data"), help="where the data dirs go (%(default)s)")
    p.add_argument("--subsets", nargs="+", default=list(SUBSETS), help="(%(default)s)")
    p.add_argument("--base_url", default=BASE_URL, help="download mirror (%(default)s)")
    p.add_argument("--keep_archives", action="store_true", help="keep the .tar.gz files after extraction")
    return p


def dirs_from_args(args: argparse.Namespace) -> dict[str, Path]:
    """Prepare the data dirs the options describe (downloading first with --download_dir); name -> dir."""
    root = args.librispeech_root
    if root is None:
        root = download_librispeech(args.download_dir, args.subsets, args.base_url, keep_archives=args.keep_archives)
    return prepare_librispeech(root, args.out_dir, args.subsets)


def summary(args: argparse.Namespace, dirs: dict[str, Path]) -> Iterator[str]:
    """One line per data dir: its utterances and path."""
    for name, path in dirs.items():
        with open(path / "text", encoding="utf-8") as text:
            yield f"{name}\t{sum(1 for _ in text)} utterances\t{path}"


def main(argv: Sequence[str] | None = None) -> int:
    """Prepare the data dirs and print utterances per dir."""
    return run_corpus_cli(build_parser(), argv, dirs_from_args, summary,
                          (ValueError, FileNotFoundError, tarfile.TarError))


if __name__ == "__main__":
    sys.exit(main())
