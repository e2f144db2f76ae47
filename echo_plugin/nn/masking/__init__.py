"""Key-masking strategies for attention (``echo_plugin.catalog.MASKING``) and the silence frames they may soften.

YAML, per attention module: ``masking: hard`` (default, -inf for padding) or
``masking: {type: soft, conf: {scale: 1.0e-6, learned: false, min_scale: 1.0e-8, max_scale: 0.1}}``.
"""
from echo_plugin.nn.masking.base import KeyMasking
from echo_plugin.nn.masking.hard import HardMasking
from echo_plugin.nn.masking.silence import frame_silence, subsample_silence
from echo_plugin.nn.masking.soft import SoftMasking

__all__ = ["KeyMasking", "HardMasking", "SoftMasking", "frame_silence", "subsample_silence"]
