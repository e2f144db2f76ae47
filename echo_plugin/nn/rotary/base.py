"""The rotary interface, and the options every position-driven variant shares.

Every ROTARY variant is a :class:`Rotary` and offers the attention layer two calls:

* ``rotate(x, positions, f0=None) -> Tensor``: rotate (and, where a variant says so,
  scale) queries or keys ``x`` (B, H, T, dh) at ``positions`` (T,) or (B, T)
  (the axial variant: (T, 2) or (B, T, 2)). ``f0`` is an :class:`F0Track` on x's
  frames; only pitch-aware variants read it.
* ``score_bias(q_f0, k_f0) -> Tensor | None``: an additive attention-score bias
  (B|1, H|1, T, S), or None (the default).

The attention layer never asks which variant it holds. Complex-frequency variants
derive from :class:`PairRotary` and rotate through the one shared
:func:`~echo_plugin.nn.rotary.apply.apply_rotary`; the Givens and quaternion
variants rotate the channels themselves.

The design documents' shared options, each defined once here:

* a negative ``theta`` reverses the rotation direction (:func:`geometric_ladder`);
* ``rot_scale`` multiplies every angle (:meth:`AngleRotary.angles`; negative also reverses);
* ``rot_count`` is the number of rotated channel pairs, an alternative to
  ``rot_dim = 2 * rot_count`` (:func:`pair_count`).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from echo_plugin.nn.rotary.apply import apply_rotary
from echo_plugin.nn.rotary.pitch import F0Track


def geometric_ladder(theta: float, count: int) -> Tensor:
    """``sign(theta) * |theta| ** (-k / count)`` for ``k < count``: RoPE's angular frequencies.

    Unit ``k`` of ``count`` turns by this many radians per position; with
    ``count = rot_dim / 2`` it is standard RoPE's ``theta ** (-2k / rot_dim)``. A
    negative ``theta`` gives the same speeds turning the other way.
    """
    if theta == 0:
        raise ValueError("theta must be non-zero (its sign sets the rotation direction)")
    exponent = -torch.arange(count, dtype=torch.float64) / max(count, 1)
    return (math.copysign(1.0, theta) * abs(theta) ** exponent).to(torch.float32)


def pair_count(head_dim: int, rot_dim: Optional[int] = None, rot_count: Optional[int] = None) -> int:
    """Rotated channel pairs from ``rot_dim`` (even) or ``rot_count`` (pairs); default all of head_dim."""
    if rot_dim is not None and rot_count is not None:
        raise ValueError(f"set rot_dim or rot_count, not both (got rot_dim={rot_dim}, rot_count={rot_count})")
    if rot_count is not None:
        if not 0 < 2 * rot_count <= head_dim:
            raise ValueError(f"rot_count must be in (0, head_dim / 2 = {head_dim // 2}], got {rot_count}")
        return int(rot_count)
    rot_dim = head_dim - head_dim % 2 if rot_dim is None else rot_dim
    if rot_dim % 2 or not 0 < rot_dim <= head_dim:
        raise ValueError(f"rot_dim must be even and in (0, head_dim={head_dim}], got {rot_dim}")
    return rot_dim // 2


class Rotary(nn.Module):
    """Base of every ROTARY variant (see the module doc for the interface).

    Args:
        head_dim: channels per attention head (set by the model).
    """

    needs_f0: bool = False
    """True for variants that cannot rotate without pitch (a model may skip pitch extraction otherwise)."""

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.head_dim = head_dim

    def rotate(self, x: Tensor, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        """x (B, H, T, dh) at positions (T,) or (B, T) -> (B, H, T, dh) of x's dtype."""
        raise NotImplementedError

    def score_bias(self, q_f0: Optional[F0Track], k_f0: Optional[F0Track]) -> Optional[Tensor]:
        """Additive score bias (B|1, H|1, T, S) for queries/keys with these pitch tracks; None = none."""
        return None

    def forward(self, x: Tensor, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        return self.rotate(x, positions, f0)


class AngleRotary(Rotary):
    """A rotary driven by angles: ``angles = rot_scale * raw_angles(positions, f0)``.

    Args:
        head_dim: channels per head.  rot_scale: multiplies every angle.
    """

    def __init__(self, head_dim: int, rot_scale: float = 1.0) -> None:
        super().__init__(head_dim)
        self.rot_scale = float(rot_scale)

    def raw_angles(self, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        """Angles before ``rot_scale``: (T, U) or (B, T, U) for the variant's U rotated units."""
        raise NotImplementedError

    def angles(self, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        """(T, U) or (B, T, U) rotation angles in radians."""
        raw = self.raw_angles(positions, f0)
        return raw if self.rot_scale == 1.0 else self.rot_scale * raw


class PairRotary(AngleRotary):
    """Complex-multiplication rotary: pair ``i`` of frame ``t`` times ``radius_t * exp(1j * angle_{t,i})``.

    Subclasses give ``raw_angles`` and, optionally, ``radius`` (default: unit circle).

    Args:
        head_dim: channels per head.  n_pairs: rotated pairs F (channels 2F.. pass through).
        rot_scale: multiplies every angle.
    """

    def __init__(self, head_dim: int, n_pairs: int, rot_scale: float = 1.0) -> None:
        super().__init__(head_dim, rot_scale)
        if not 0 <= 2 * n_pairs <= head_dim:
            raise ValueError(f"{n_pairs} pairs do not fit head_dim={head_dim}")
        self.n_pairs = n_pairs

    @property
    def rot_dim(self) -> int:
        return 2 * self.n_pairs

    def radius(self, positions: Tensor, f0: Optional[F0Track] = None) -> Optional[Tensor]:
        """Moduli broadcastable against the angles, or None for the unit circle."""
        return None

    def freqs(self, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        """Complex factors: (T, F) when nothing is per utterance, else (B, 1, T, F) (broadcast over heads)."""
        angles = self.angles(positions, f0)
        radius = self.radius(positions, f0)
        if radius is None:
            radius = torch.ones_like(angles)
        radius, angles = torch.broadcast_tensors(radius.to(angles.dtype), angles)
        freqs = torch.polar(radius, angles)
        return freqs if freqs.dim() == 2 else freqs.unsqueeze(-3)

    def rotate(self, x: Tensor, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        return apply_rotary(x, self.freqs(positions, f0))

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, rot_dim={self.rot_dim}, rot_scale={self.rot_scale}"


class LadderRotary(PairRotary):
    """``angle_{t,i} = rot_scale * p_t * w_i``: positions times a ladder ``inv_freq`` (F,) of radians per position.

    Positions may be fractional (``continuous``), which the pitch-aware variant
    uses to turn accumulated pitch phase into angles.

    Args:
        head_dim: channels per head.  inv_freq: (F,) the ladder.  rot_scale: angle multiplier.
        learn: make the ladder a trained parameter.
    """

    continuous: bool = True

    def __init__(self, head_dim: int, inv_freq: Tensor, rot_scale: float = 1.0, learn: bool = False) -> None:
        super().__init__(head_dim, len(inv_freq), rot_scale)
        if learn:
            self.inv_freq = nn.Parameter(inv_freq.clone())
        else:
            self.register_buffer("inv_freq", inv_freq.clone(), persistent=False)

    def raw_angles(self, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        """Integer positions in float32; fractional positions keep their precision (e.g. float64)."""
        p = positions if positions.is_floating_point() else positions.to(torch.float32)
        return p.unsqueeze(-1) * self.inv_freq.to(p.dtype)
