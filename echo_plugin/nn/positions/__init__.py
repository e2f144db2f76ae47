"""Decoder position schemes (``echo_plugin.catalog.POSITION``): how a decoder tells tokens apart by position.

A position module maps token embeddings (B, L, D) at target positions (L,) to
the decoder's input (B, L, D), and names the rotary its self-attention uses
(``self_rotary``, a ROTARY spec; ``"none"`` for absolute schemes).
"""
from echo_plugin.nn.positions.learned import LearnedPositions
from echo_plugin.nn.positions.rotary import RotaryPositions
from echo_plugin.nn.positions.sinusoidal import SinusoidalPositions

__all__ = ["LearnedPositions", "RotaryPositions", "SinusoidalPositions"]
