"""f0 on the frame grid of a frontend that gives none (ESPnet's ``default`` log-mel, or a frontend
that states its grid, as the pretrained Whisper frontend does: 20 ms frames).

``model: echo`` with ``model_conf: {f0: {method: dio, floor: 60.0, ceil: 300.0}}``
lets a pitch-aware encoder run on ESPnet's own frontend: the model computes WORLD
f0 from the waveform on the frontend's frames (frame t centred on sample
t * hop, N // hop + 1 frames, as the STFT with ``center=True``), so a pitch-aware
model can differ from a standard one by its rotary alone.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from echo_plugin.features.grid import FrameGrid
from echo_plugin.features.pitch import F0Config, extract_f0
from echo_plugin.nn.capabilities import HasFrameGrid


def frontend_grid(frontend: nn.Module) -> FrameGrid:
    """The frame grid of a frontend that states it (:class:`HasFrameGrid`), else of ESPnet's
    DefaultFrontend (fs from its mel filterbank, its STFT hop)."""
    if isinstance(frontend, HasFrameGrid):
        return frontend.frame_grid()
    stft = getattr(frontend, "stft", None)
    logmel = getattr(frontend, "logmel", None)
    mel_options = getattr(logmel, "mel_options", None)
    if stft is None or not isinstance(mel_options, dict) or "sr" not in mel_options:
        raise ValueError(
            f"model_conf f0 needs ESPnet's default frontend (STFT + log-mel) or one with frame_grid(); got "
            f"{type(frontend).__name__}: "
            "use frontend: echo with frontend_conf f0 instead"
        )
    if not stft.center:
        raise ValueError("model_conf f0 needs the frontend's STFT with center=True (frames centred on t * hop)")
    return FrameGrid(fs=int(mel_options["sr"]), n_fft=stft.n_fft, hop_length=stft.hop_length,
                     win_length=stft.win_length)


class FrontendPitch(nn.Module):
    """speech (B, N), lengths (B,), frames T -> f0 (B, T) float Hz (0 = unvoiced or padding), on CPU per utterance."""

    def __init__(self, grid: FrameGrid, conf: F0Config) -> None:
        super().__init__()
        self.grid, self.conf = grid, conf

    @torch.no_grad()
    def forward(self, speech: Tensor, lengths: Tensor, num_frames: int) -> Tensor:
        f0 = np.zeros((speech.shape[0], num_frames), dtype=np.float32)
        wave = speech.detach().float().cpu().numpy()
        for i, n in enumerate(lengths.tolist()):
            track = extract_f0(wave[i, :n], self.grid, self.conf)[:num_frames]
            f0[i, : len(track)] = track
        return torch.from_numpy(f0).to(speech.device)
