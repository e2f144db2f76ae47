"""Shared fixtures of the feature tests: the FSDD grid, real recordings, synthetic signals."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from echo_plugin.features import FeatureConfig, FrameGrid

FSDD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fsdd" / "recordings"
FS = 8000
GRID = FrameGrid(fs=FS, n_fft=256, hop_length=80, win_length=200)
CONF = FeatureConfig(fs=FS, n_fft=256, hop_length=80, win_length=200, n_mels=40)
LENGTHS = (81, 800, 1999, 4321)  # samples: odd, whole hops, one short of a hop


def recording(name: str) -> np.ndarray:
    """A real FSDD recording as float32 (as ESPnet's sound loader reads it)."""
    path = FSDD / f"{name}.wav"
    assert path.is_file(), f"FSDD recordings expected under {FSDD}"
    samples, rate = soundfile.read(path, dtype="float32")
    assert rate == FS
    return samples


def sine(hz: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * FS)) / FS
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def speechlike(seconds: float = 0.6, seed: int = 0) -> np.ndarray:
    """A 120 Hz glottal-like pulse train through a resonance, with a little noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    pulses = np.zeros(n)
    pulses[:: FS // 120] = 1.0
    from scipy.signal import lfilter

    voiced = lfilter([1.0], [1.0, -1.3, 0.8], pulses)
    x = voiced / np.abs(voiced).max() * 0.4 + 0.005 * rng.standard_normal(n)
    return x.astype(np.float32)
