"""Write a small corpus in LibriSpeech's upstream layout (for tests)."""
from __future__ import annotations

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
