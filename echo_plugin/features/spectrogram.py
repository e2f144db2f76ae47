"""Log-mel spectrogram on the shared frame grid (torchaudio)."""
from __future__ import annotations

from typing import Optional

import torch
import torchaudio
from torch import Tensor, nn

from echo_plugin.features.grid import FrameGrid

LOG_FLOOR = 1e-10  # as ESPnet's LogMel


class LogMelSpectrogram(nn.Module):
    """(B, N) waveform -> (B, N // hop + 1, n_mels) natural-log mel power.

    Frames are centred (``center=True``) with *zero* padding at the edges,
    not torchaudio's default reflection: a shorter utterance padded with zeros in
    a batch then gets exactly the frames it gets alone. Slaney mel scale and
    area normalisation, as ESPnet's default frontend (librosa filters).
    """

    def __init__(self, grid: FrameGrid, n_mels: int = 80, fmin: float = 0.0, fmax: Optional[float] = None) -> None:
        super().__init__()
        self.grid = grid
        self.n_mels = n_mels
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=grid.fs,
            n_fft=grid.n_fft,
            win_length=grid.win_length,
            hop_length=grid.hop_length,
            f_min=fmin,
            f_max=fmax,
            n_mels=n_mels,
            power=2.0,
            center=True,
            pad_mode="constant",
            norm="slaney",
            mel_scale="slaney",
        )

    def forward(self, wave: Tensor) -> Tensor:
        mel = self.mel(wave.float())  # (B, n_mels, T)
        return torch.log(mel.clamp(min=LOG_FLOOR)).transpose(-1, -2)
