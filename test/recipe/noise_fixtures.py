"""Small synthetic data dirs for the noise and SNR-set tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

FS = 8000


def voiced(rng: np.random.Generator, seconds: float = 0.8, fs: int = FS) -> np.ndarray:
    """A speech-like signal: a harmonic tone with a random f0, silence before and after."""
    t = np.arange(int(seconds * fs)) / fs
    f0 = rng.uniform(90, 250)
    tone = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) / k for k in range(1, 6))
    envelope = np.sin(np.pi * t / t[-1]) ** 2
    pad = np.zeros(int(0.2 * fs))
    return np.concatenate([pad, 0.2 * tone * envelope, pad])


def make_data_dir(root: Path, speakers: dict[str, int], seed: int = 0, fs: int = FS) -> Path:
    """A Kaldi data dir with ``n`` utterances per speaker (16-bit wavs at ``fs``)."""
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True)
    wav, text, utt2spk = [], [], []
    for spk, n in sorted(speakers.items()):
        for i in range(n):
            utt = f"{spk}-{i:03d}"
            path = root / "wav" / f"{utt}.wav"
            sf.write(path, voiced(rng, fs=fs), fs, subtype="PCM_16")
            wav.append(f"{utt} {path}\n")
            text.append(f"{utt} ONE TWO\n")
            utt2spk.append(f"{utt} {spk}\n")
    (root / "wav.scp").write_text("".join(wav))
    (root / "text").write_text("".join(text))
    (root / "utt2spk").write_text("".join(utt2spk))
    return root


def read_scp(path: Path) -> dict[str, str]:
    return dict(line.split(maxsplit=1) for line in path.read_text().splitlines())
