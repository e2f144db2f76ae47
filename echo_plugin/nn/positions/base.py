"""POSITION registry: how a decoder tells tokens apart by position.

A position module maps token embeddings (B, L, D) at target positions (L,) to
the decoder's input (B, L, D), and names the rotary its self-attention uses
(``self_rotary``, a ROTARY spec; ``"none"`` for absolute schemes).
"""
from __future__ import annotations

from echo_plugin.registry import Registry

POSITION: Registry = Registry("position")
