"""Echo's input features on one frame grid (pure torch/numpy/pyworld; no ESPnet).

One file per feature: ``spectrogram`` (log mel), ``pitch`` (WORLD f0),
``harmonic`` (WORLD envelope bands), ``aperiodic`` (WORLD aperiodicity bands),
``phase`` (instantaneous-frequency deviation and group delay bands),
``waveform`` (frame-aligned raw samples). ``extractor`` computes a batch of
them; ``cache`` writes them once to Kaldi ark/scp.
"""
from echo_plugin.features.extractor import (
    FEATURES,
    STORED_FEATURES,
    WORLD_FEATURES,
    Extracted,
    FeatureConfig,
    FeatureExtractor,
)
from echo_plugin.features.grid import FrameGrid
from echo_plugin.features.pitch import F0Config

__all__ = [
    "FEATURES",
    "STORED_FEATURES",
    "WORLD_FEATURES",
    "Extracted",
    "F0Config",
    "FeatureConfig",
    "FeatureExtractor",
    "FrameGrid",
]
