"""Write a small corpus in LibriSpeech's upstream layout (for tests).

The spoken corpus of the recipe smoke test is committed under
``test/fixtures/librispeech/LibriSpeech`` (so the test runs where espeak-ng is
not installed); it was made with

    .venv/bin/python -m test.data.librispeech_layout test/fixtures/librispeech

(espeak-ng 1.51, sox 14.4.2, Debian 12).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

# subset -> speaker -> chapter -> transcripts, one per utterance (numbered 0000, 0001, ...)
Corpus = Mapping[str, Mapping[str, Mapping[str, Sequence[str]]]]
Render = Callable[[str, Path], None]


def noise_flac(words: str, path: Path) -> None:
    """A short 16 kHz FLAC of noise whose length grows with the transcript."""
    rng = np.random.default_rng(len(words))
    sf.write(path, 0.1 * rng.standard_normal(800 + 40 * len(words)), 16000, format="FLAC", subtype="PCM_16")


def write_corpus(root: Path, corpus: Corpus, render: Render = noise_flac) -> Path:
    """``root/LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac`` + ``.trans.txt``."""
    for subset, speakers in corpus.items():
        for spk, chapters in speakers.items():
            for chapter, lines in chapters.items():
                folder = root / "LibriSpeech" / subset / spk / chapter
                folder.mkdir(parents=True, exist_ok=True)
                trans = []
                for i, words in enumerate(lines):
                    uttid = f"{spk}-{chapter}-{i:04d}"
                    render(words, folder / f"{uttid}.flac")
                    trans.append(f"{uttid} {words}\n")
                (folder / f"{spk}-{chapter}.trans.txt").write_text("".join(trans))
    return root / "LibriSpeech"


def espeak_renderer(voice: str, rate: int = 160) -> Render:
    """Render a transcript with espeak-ng (``voice``, words per minute) into a 16 kHz mono FLAC."""
    import subprocess
    import tempfile

    def render(words: str, path: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "say.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(wav), words.lower()], check=True)
            subprocess.run(["sox", str(wav), "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True)

    return render


def write_spoken_corpus(root: Path, corpus: Corpus, voices: Mapping[str, str]) -> Path:
    """:func:`write_corpus` with each speaker's lines spoken by espeak-ng in ``voices[speaker]``."""
    for subset, speakers in corpus.items():
        for spk, chapters in speakers.items():
            write_corpus(root, {subset: {spk: chapters}}, espeak_renderer(voices[spk]))
    return root / "LibriSpeech"


REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "test" / "fixtures" / "librispeech" / "LibriSpeech"
# subset -> speaker -> chapter -> transcripts: the recipe smoke test's corpus
SMOKE_CORPUS: Corpus = {
    "train-clean-100": {
        "19": {"198": ["THE CAT SAT ON A MAT", "A DOG RAN TO THE MAN", "IT'S NOT THE HAT"]},
        "103": {"1240": ["THE MAN SAT ON THE DOG", "A CAT AND A HAT", "THE DOG RAN AND SAT"]},
    },
    "dev-clean": {"84": {"121123": ["THE CAT RAN"]}},
    "dev-other": {"116": {"288045": ["A MAN AND A DOG"]}},
    "test-clean": {"1089": {"134686": ["THE HAT SAT ON THE CAT"]}},
    "test-other": {"1688": {"142285": ["IT'S A DOG"]}},
}
SMOKE_VOICES = {"19": "en+m3", "103": "en+f2", "84": "en+m1", "116": "en+f3", "1089": "en+m2", "1688": "en+f4"}


if __name__ == "__main__":
    write_spoken_corpus(Path(sys.argv[1]), SMOKE_CORPUS, SMOKE_VOICES)
