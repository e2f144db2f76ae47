"""Reading audio: one reader and one error type for the recipes' stages and for transcription."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soundfile as sf


class AudioError(ValueError):
    """An audio file that cannot be used, with the file named."""


def wav_declared_frames(path: Path) -> tuple[int, int] | None:
    """(frames the RIFF/WAVE header's data chunk declares, frames the file holds), or None for another
    format. libsndfile reads a cut-off WAV silently, as far as it goes; this tells it apart."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                return None
            name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"fmt ":
                fmt = handle.read(size + (size & 1))
                block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
            elif name == b"data":
                if not block_align or size == 0xFFFFFFFF:  # streamed WAVs leave the size unset
                    return None
                held = path.stat().st_size - handle.tell()
                return size // block_align, max(held, 0) // block_align
            else:
                handle.seek(size + (size & 1), 1)


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Float32 samples (frames x channels) and the sample rate of ``path``; AudioError naming the file
    when it is missing, unreadable, empty or a WAV shorter than its header says."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"missing audio file {path}")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types for bad files
        raise AudioError(f"unreadable audio file {path}: {e}") from None
    if len(data) == 0:
        raise AudioError(f"empty audio file {path} (0 samples)")
    frames = wav_declared_frames(path)
    if frames is not None and frames[1] < frames[0]:
        raise AudioError(f"truncated audio file {path}: its header declares {frames[0]} samples, "
                         f"the file holds {frames[1]}")
    return data, rate


def read_audio(path: str | Path, fs: int, utt_id: str | None = None) -> np.ndarray:
    """Samples (N,) of ``path`` as mono float32 at ``fs`` Hz (resampled if needed)."""
    try:
        samples, rate = load_audio(path)
    except AudioError as error:
        raise AudioError(f"utterance '{utt_id}': {error}" if utt_id else str(error)) from None
    mono = samples.mean(axis=1)
    if rate != fs:
        import torch  # deferred: the recipe's stages import this module and only some resample
        import torchaudio

        mono = torchaudio.functional.resample(torch.from_numpy(mono), rate, fs).numpy()
    return mono
