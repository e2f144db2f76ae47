"""Pitch-aware rotary: angles, radii and a score bias from each frame's f0.

A position rotary ``base`` (standard, mel or learned; its ``rot_dim``/``theta``/
``rot_scale`` live in its own conf) gives ``base_angle(p)_i``. With ``f0_t`` the
pitch of frame ``t`` (0 = unvoiced) and ``m_t = f0_t / f0_ref`` on voiced frames:

* angles, ``angle_source: position`` (the document's ``t * freqs(theta + f0_t)``):
  ``angle_{t,i} = s_t * base_angle(p_t)_i`` with ``s_t = m_t`` on voiced frames and 1 on
  unvoiced ones when ``theta_from_f0`` (else 1): a higher voice turns faster, as the
  document's per-frame ``(theta + f0_t) / 220`` factor on its frequencies (the document's
  additive theta of 10000 left that factor almost constant; here it is the pitch ratio).
* angles, ``angle_source: phase``: the position is replaced by the accumulated pitch
  phase ``phi_t = phi_{t-1} + 2 pi f0_t T_frame`` (``phi_{-1} = phase0``; ``T_frame``
  the layer's frame period), ``angle_{t,i} = base_angle(phi_t)_i``: with the standard
  ladder, pair 0 turns with the glottal cycle and pair i at ``theta^(-i/F)`` of it.
* radii (``radii: true``): ``r_t = m_t`` on voiced frames and ``radius_floor`` (default 0,
  as the document) on unvoiced ones, so the rotated channels of q and k scale with pitch
  (the document uses raw Hz, ~200x; dividing by ``f0_ref`` keeps typical radii near 1).
* score bias (``pitch_bias: w > 0``): ``-w * |log f0_q - log f0_k|`` added to the
  attention scores, 0 where either frame is unvoiced: symmetric, 0 for equal pitch.

With f0 all zero and radii off, the variant equals its base.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from echo_plugin.catalog import ROTARY
from echo_plugin.nn.rotary.base import LadderRotary, PairRotary
from echo_plugin.nn.rotary.pitch import F0Track, accumulate_phase
from echo_plugin.registry import Spec

ANGLE_SOURCES = ("position", "phase")


def pitch_similarity_bias(q_hz: Tensor, k_hz: Tensor, weight: float) -> Tensor:
    """(B, T) and (B, S) f0 in Hz -> (B, 1, T, S) bias ``-weight * |log q - log k|``, 0 at unvoiced frames."""
    q_voiced, k_voiced = q_hz > 0, k_hz > 0
    q_log = torch.log(q_hz.clamp_min(1e-3))
    k_log = torch.log(k_hz.clamp_min(1e-3))
    distance = (q_log[:, :, None] - k_log[:, None, :]).abs()
    both = q_voiced[:, :, None] & k_voiced[:, None, :]
    return torch.where(both, -weight * distance, torch.zeros_like(distance))[:, None]


class PitchAwareRotary(PairRotary):
    """Rotary whose angles, radii and score bias follow f0 (see the module doc).

    YAML::

        rotary: {type: pitch_aware, conf: {base: {type: mel, conf: {max_hz: 8000.0}},
                 angle_source: phase, radii: true, radius_floor: 0.1, pitch_bias: 1.0}}

    Args:
        head_dim: channels per attention head (set by the model).
        base: ROTARY spec of the position ladder (``standard``, ``mel``, ``learned``).
        angle_source: ``position`` or ``phase``.
        f0_ref: reference pitch in Hz for ``m_t = f0_t / f0_ref``.
        theta_from_f0: scale position angles by ``m_t`` on voiced frames.
        radii: take the radii from f0.  radius_floor: radius of unvoiced frames.
        pitch_bias: weight of the log-pitch distance score bias (0 = off).
        phase0: initial phase for ``angle_source: phase``.
    """

    needs_f0 = True

    def __init__(
        self,
        head_dim: int,
        base: Spec = "standard",
        angle_source: str = "position",
        f0_ref: float = 220.0,
        theta_from_f0: bool = True,
        radii: bool = False,
        radius_floor: float = 0.0,
        pitch_bias: float = 0.0,
        phase0: float = 0.0,
    ) -> None:
        base_rotary = ROTARY.build(base, head_dim=head_dim)
        if not isinstance(base_rotary, LadderRotary):
            raise ValueError(
                f"pitch_aware: base must be a position-ladder rotary (standard, mel, learned), "
                f"got {type(base_rotary).__name__}"
            )
        if angle_source not in ANGLE_SOURCES:
            raise ValueError(f"pitch_aware: angle_source must be one of {ANGLE_SOURCES}, got '{angle_source}'")
        if angle_source == "phase" and not base_rotary.continuous:
            raise ValueError(f"pitch_aware: angle_source 'phase' needs fractional positions, which "
                             f"{type(base_rotary).__name__} does not take")
        if f0_ref <= 0 or radius_floor < 0 or pitch_bias < 0:
            raise ValueError("pitch_aware: need f0_ref > 0, radius_floor >= 0, pitch_bias >= 0")
        super().__init__(head_dim, base_rotary.n_pairs)  # rot_scale lives in the base
        self.base = base_rotary
        self.angle_source = angle_source
        self.f0_ref = float(f0_ref)
        self.theta_from_f0 = theta_from_f0
        self.use_radii = radii
        self.radius_floor = float(radius_floor)
        self.pitch_bias = float(pitch_bias)
        self.phase0 = float(phase0)

    def _hz(self, positions: Tensor, f0: Optional[F0Track]) -> Tensor:
        if f0 is None:
            raise ValueError(
                "pitch_aware rotary needs f0: pass f0 (B, T_in) in Hz to EchoEncoder.forward "
                "(an ESPnet model that extracts pitch), or use a position rotary here"
            )
        return f0.on_frames(positions.shape[-1], "pitch_aware rotary").to(self.base.inv_freq.device)

    def _ratio(self, hz: Tensor, unvoiced: float) -> Tensor:
        return torch.where(hz > 0, hz / self.f0_ref, torch.full_like(hz, unvoiced))

    def raw_angles(self, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        """(B, T, F) angles for positions (T,) or (B, T) and f0 (B, T)."""
        hz = self._hz(positions, f0)
        if self.angle_source == "phase":
            phase = accumulate_phase(hz, f0.frame_period, self.phase0)
            return torch.remainder(self.base.angles(phase), 2 * math.pi).to(torch.float32)
        angles = self.base.angles(positions)
        if self.theta_from_f0:
            angles = angles * self._ratio(hz, 1.0).unsqueeze(-1)
        return angles.expand(hz.shape[0], *angles.shape[-2:])

    def radius(self, positions: Tensor, f0: Optional[F0Track] = None) -> Optional[Tensor]:
        """(B, T, 1) radii from f0, or None when ``radii`` is off."""
        if not self.use_radii:
            return None
        return self._ratio(self._hz(positions, f0), self.radius_floor).unsqueeze(-1)

    def score_bias(self, q_f0: Optional[F0Track], k_f0: Optional[F0Track]) -> Optional[Tensor]:
        if self.pitch_bias == 0.0:
            return None
        if q_f0 is None or k_f0 is None:
            raise ValueError("pitch_aware rotary with pitch_bias needs f0 for queries and keys")
        return pitch_similarity_bias(q_f0.hz.to(torch.float32), k_f0.hz.to(torch.float32), self.pitch_bias)

    def extra_repr(self) -> str:
        return (
            f"angle_source={self.angle_source}, f0_ref={self.f0_ref}, theta_from_f0={self.theta_from_f0}, "
            f"radii={self.use_radii}, radius_floor={self.radius_floor}, pitch_bias={self.pitch_bias}"
        )
