"""Reading audio for transcription: mono float32 at the model's rate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio


class AudioError(ValueError):
    """An audio file that cannot be used, with the file named."""


def read_audio(path: str | Path, fs: int, utt_id: str | None = None) -> np.ndarray:
    """Samples (N,) of ``path`` as mono float32 at ``fs`` Hz (resampled if needed)."""
    name = f"utterance '{utt_id}' ({path})" if utt_id else str(path)
    if not Path(path).is_file():
        raise AudioError(f"{name}: no such file")
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # soundfile raises several types for bad files
        raise AudioError(f"{name}: cannot read audio ({error})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{name}: empty audio (0 samples)")
    mono = samples.mean(axis=1)
    if rate != fs:
        mono = torchaudio.functional.resample(torch.from_numpy(mono), rate, fs).numpy()
    return mono
