"""Fundamental frequency (f0) on the shared frame grid, and the pitch features built from it.

f0 comes from WORLD (pyworld), which makes a voiced/unvoiced decision and
reports 0 Hz on unvoiced frames:

- ``dio`` + ``stonemask`` (default): DIO's candidates refined by StoneMask.
  About 6 ms of CPU per second of 8 kHz audio, cheap enough to run on the fly
  in the frontend at every step.
- ``harvest``: more robust f0 and voicing (fewer octave errors, fewer voiced
  frames missed) but ~40x slower (~0.2 s per second of audio): use it with the
  feature cache (``python -m echo_plugin.features.cache``). It needs harmonics:
  a pure sine comes out unvoiced.

torchaudio's ``detect_pitch_frequency`` is not offered: it reports a frequency on
every frame, silence included, so it has no voicing decision.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyworld
import torch
from torch import Tensor

from echo_plugin.features.grid import FrameGrid, fit_frames, frame_mask

F0_METHODS = ("dio", "harvest")
LOG_F0_REF_HZ = 125.0  # pitch features give log2(f0 / 125 Hz): octaves around a mid speech pitch
PITCH_FEATURE_DIM = 4


@dataclass(frozen=True)
class F0Config:
    """WORLD f0 search: method and range (Hz)."""

    method: str = "dio"
    floor: float = 50.0
    ceil: float = 400.0

    def __post_init__(self) -> None:
        if self.method not in F0_METHODS:
            raise ValueError(f"unknown f0 method '{self.method}'; known: {', '.join(F0_METHODS)}")
        if not 0 < self.floor < self.ceil:
            raise ValueError(f"need 0 < f0 floor < ceil, got {self.floor}, {self.ceil}")


def world_f0(x: np.ndarray, grid: FrameGrid, conf: F0Config = F0Config()) -> tuple[np.ndarray, np.ndarray]:
    """One utterance (N,) -> (f0 (T,) float64 Hz, 0 = unvoiced; frame times (T,) s), T = N // hop + 1.

    The times are what ``cheaptrick``/``d4c`` need alongside f0.
    """
    if conf.ceil >= grid.fs / 2:
        raise ValueError(f"f0 ceil {conf.ceil} Hz must lie below fs/2 = {grid.fs / 2} Hz")
    num_frames = grid.num_frames(len(x))
    times = np.arange(num_frames, dtype=np.float64) * grid.hop_length / grid.fs
    x = np.ascontiguousarray(x, dtype=np.float64)
    if len(x) == 0 or not np.any(x):
        return np.zeros(num_frames), times
    if conf.method == "dio":
        f0, t = pyworld.dio(x, grid.fs, f0_floor=conf.floor, f0_ceil=conf.ceil, frame_period=grid.frame_period_ms)
        f0 = pyworld.stonemask(x, f0, t, grid.fs)
    else:
        f0, _ = pyworld.harvest(x, grid.fs, f0_floor=conf.floor, f0_ceil=conf.ceil, frame_period=grid.frame_period_ms)
    f0 = fit_frames(np.where(np.isfinite(f0) & (f0 > 0), f0, 0.0), num_frames)
    return f0, times


def extract_f0(x: np.ndarray, grid: FrameGrid, conf: F0Config = F0Config()) -> np.ndarray:
    """One utterance (N,) -> f0 (T,) float32 Hz, 0 on unvoiced frames."""
    return world_f0(x, grid, conf)[0].astype(np.float32)


def pitch_features(f0: Tensor, lengths: Tensor) -> Tensor:
    """f0 (B, T) Hz, frame lengths (B,) -> (B, T, 4) pitch features, 0 on padding frames.

    Channels: voicing (0/1); log2(f0 / 125 Hz) interpolated linearly across
    unvoiced frames and held at the utterance's ends; the same minus the
    utterance's voiced mean (speaker-normalised); its central difference per
    frame. Utterances without voiced frames get zeros. Only the utterance's own
    frames enter, so a padded batch gives each utterance its lone values.
    """
    batch, num_frames = f0.shape
    valid = frame_mask(lengths, num_frames)
    voiced = (f0 > 0) & valid
    log_f0 = torch.where(voiced, torch.log2(f0.clamp(min=1e-3) / LOG_F0_REF_HZ), torch.zeros_like(f0))
    interp = _interpolate_unvoiced(log_f0, voiced)
    count = voiced.sum(dim=1, keepdim=True)
    mean = (log_f0 * voiced).sum(dim=1, keepdim=True) / count.clamp(min=1)
    normalised = torch.where(count > 0, interp - mean, torch.zeros_like(interp))
    # central difference with the last real frame held beyond the utterance's end
    last = (lengths - 1).clamp(min=0)[:, None]
    idx = torch.arange(num_frames, device=f0.device)[None, :]
    ahead = torch.gather(interp, 1, torch.minimum(idx + 1, last).expand(batch, -1))
    behind = torch.gather(interp, 1, (idx - 1).clamp(min=0).expand(batch, -1))
    delta = 0.5 * (ahead - behind)
    feats = torch.stack([voiced.to(f0.dtype), interp, normalised, delta], dim=-1)
    return feats * valid[..., None]


def _interpolate_unvoiced(values: Tensor, voiced: Tensor) -> Tensor:
    """Linear interpolation of (B, T) ``values`` over frames where ``voiced`` is False.

    Before the first / after the last voiced frame the nearest voiced value is
    held; a row with no voiced frame becomes 0.
    """
    batch, num_frames = values.shape
    idx = torch.arange(num_frames, device=values.device).expand(batch, -1)
    prev_idx = torch.where(voiced, idx, torch.full_like(idx, -1)).cummax(dim=1).values
    flipped = torch.where(voiced, num_frames - 1 - idx, torch.full_like(idx, -1)).flip(1).cummax(dim=1).values.flip(1)
    next_idx = torch.where(flipped >= 0, num_frames - 1 - flipped, torch.full_like(idx, -1))
    has_prev, has_next = prev_idx >= 0, next_idx >= 0
    prev_val = torch.gather(values, 1, prev_idx.clamp(min=0))
    next_val = torch.gather(values, 1, next_idx.clamp(min=0))
    span = (next_idx - prev_idx).clamp(min=1).to(values.dtype)
    frac = (idx - prev_idx).to(values.dtype) / span
    between = prev_val + frac * (next_val - prev_val)
    out = torch.where(has_prev & has_next, between, torch.where(has_prev, prev_val, next_val))
    return torch.where(has_prev | has_next, out, torch.zeros_like(values))
