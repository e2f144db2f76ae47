"""Rotary position embeddings: angle/radius sources plus one shared apply step.

Every variant is a :class:`Rotary` with ``rotate(x, positions, f0=None)`` and
``score_bias(q_f0, k_f0)``; see :mod:`echo_plugin.nn.rotary.base`.
"""
from echo_plugin.nn.rotary.apply import apply_rotary
from echo_plugin.nn.rotary.axial import AxialRotary, grid_positions
from echo_plugin.nn.rotary.base import AngleRotary, LadderRotary, PairRotary, Rotary, geometric_ladder, pair_count
from echo_plugin.nn.rotary.givens import GivensRotary
from echo_plugin.nn.rotary.learned import LearnedRotary
from echo_plugin.nn.rotary.mel import MelRotary
from echo_plugin.nn.rotary.none import NoRotary
from echo_plugin.nn.rotary.pitch import F0Track, accumulate_phase, resample_f0
from echo_plugin.nn.rotary.pitch_aware import PitchAwareRotary
from echo_plugin.nn.rotary.pitch_aware_doc import DocPitchAwareRotary
from echo_plugin.nn.rotary.quaternion import QuaternionRotary
from echo_plugin.nn.rotary.standard import StandardRotary

__all__ = [
    "apply_rotary",
    "geometric_ladder",
    "pair_count",
    "accumulate_phase",
    "resample_f0",
    "grid_positions",
    "F0Track",
    "Rotary",
    "AngleRotary",
    "PairRotary",
    "LadderRotary",
    "NoRotary",
    "StandardRotary",
    "LearnedRotary",
    "MelRotary",
    "PitchAwareRotary",
    "DocPitchAwareRotary",
    "GivensRotary",
    "QuaternionRotary",
    "AxialRotary",
]
