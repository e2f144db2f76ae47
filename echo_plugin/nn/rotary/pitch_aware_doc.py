"""``pitch_aware_doc``: pitch-aware rotary exactly as its design document writes it (docs/ORIGINS.md).

Our ``pitch_aware`` reinterprets the document (angles scaled by ``f0 / 220``, radii
``f0 / 220``, a ``-|log f0_q - log f0_k|`` bias). This variant is the document's own
``rotary`` class, for benchmarking it beside ours. With ``f0_t`` the pitch of frame
``t`` in Hz (0 = unvoiced), ``theta`` a learned scalar (initially 10000) and ``F =
head_dim // 2`` pairs:

* frequency ladder (``theta_freqs``), mel-spaced from 0 to 8 kHz, in kHz::

      m_i      = i / (F - 1) * 2595 log10(1 + 8000 / 700)          (torch.linspace)
      ladder_i = 700 (10^(m_i / 2595) - 1) / 1000
      w_{t,i}  = (theta + f0_t) / 220 * ladder_i                    ("theta = f0 + self.theta")

* angles: ``angle_{t,i} = p_t * w_{t,i}`` with ``p_t`` the frame's position
  (``freqs = t[:, None] * freqs``; the document's ``t = torch.arange(ctx)``);
* radii (``radii: true``): ``r_t = f0_t / radius_ref`` (``radius = f0``: raw Hz with the
  default ``radius_ref: 1``; 0 on unvoiced frames), applied by complex multiplication
  (``torch.polar(radius.unsqueeze(-1), freqs)``, then ``view_as_complex(x) * freqs``);
* score bias (``pitch_bias: w > 0``), the document's ``pitch_bias``: f0 z-normalised over the
  utterance's frames, voiced and unvoiced (``(f0 - mean) / (std + 1e-8)``, ``std``
  unbiased as ``torch.std``), then ``w * exp(-|z_q - z_k|)`` (``torch.cdist`` of scalars)
  added to the scaled scores. Here the mean and std run over each utterance's real
  frames (``F0Track.valid``); the document, at batch size 1, takes them over its one track.

Without f0 (e.g. in a decoder), ``w_{t,i} = theta / 220 * ladder_i``, unit radii and no
bias, as the document's ``check_f0`` gives ``f0 = None`` whenever the track does not
match the sequence length (its text decoder's case).

Where the document's prose and its code disagree, or its code never runs a part:

* radii. Prose, enhancement 3: "The unit circle radius 1.0 in the torch.polar
  calculation is replaced with variable radii derived from f0." Code: every
  ``rotary(...)`` is built with ``radii=False``. Followed the prose (``radii: true``
  by default) with the code's values, raw Hz (``radius = f0.to(device, dtype)``; its
  debug print shows radii of 145-365 on voiced frames and 0 elsewhere).
  ``radius_ref: 220`` gives our reading's ``f0 / 220``.
* pitch bias. Prose, enhancement 2: "A pitch based similarity bias is added directly to
  the attention mechanism." Code: ``MultiheadA(..., use_pbias=False)`` by default and
  ``Residual`` never sets it. Followed the prose (``pitch_bias: 1.0`` by default).
* theta. Prose, enhancement 1: "Pitch f0 is used to modify the theta parameter"; the code
  adds it (``theta = f0 + self.theta``) and divides by 220 in ``theta_freqs``: followed
  the code. With ``theta`` near 10000 the factor ``(theta + f0) / 220`` moves by about 2 %
  from unvoiced to voiced frames, so the ladder tops out near ``45 * 8 = 363`` radians per
  frame: the code's values, kept.
* phase accumulation (``accumulate_phase``, ``phi_t = phi_{t-1} + 2 pi F0_t T_frame``) is
  described but never called by the rotary: left out (our ``pitch_aware`` has it as
  ``angle_source: phase``).
* ``self.bias`` (a ``(max_ctx, dims // 2)`` parameter) and the axial branch are never used
  in the document's forward with its settings (``use_pbias=False``, ``axial=False``): left out.

Positions are the layer's frame indices, as the document's ``arange(ctx)``, but the FSDD
encoder's layers run after 4x subsampling, so one position is 40 ms here where the document's
stride-1 ``FEncoder`` frames are 10 ms (``hop_length=160`` at 16 kHz, seeds 01 and 03): the
same angle per position is a quarter of the document's angular speed per second.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from echo_plugin.nn.rotary.base import PairRotary
from echo_plugin.nn.rotary.pitch import F0Track

REFERENCE_HZ = 220.0
"""The document's divisor of ``theta + f0`` in ``theta_freqs``."""


def doc_mel_term(count: int) -> Tensor:
    """(count,) the document's ``10^(linspace(0, mel(8000), count) / 2595) - 1``, float32 as the document
    (``700 *`` it is the mel-spaced ladder in Hz, 0 .. 8000)."""
    top = 2595 * torch.log10(torch.tensor(1 + 8000 / 700))
    return torch.pow(10, torch.linspace(0, float(top), count) / 2595) - 1


def z_normalise(hz: Tensor, valid: Optional[Tensor]) -> Tensor:
    """(B, T) f0 -> ``(f0 - mean) / (std + 1e-8)`` per row over its valid frames (all when None);
    std unbiased (``torch.std``), 0 for a row of fewer than 2 frames."""
    weight = torch.ones_like(hz) if valid is None else valid.to(hz.dtype)
    count = weight.sum(dim=-1, keepdim=True)
    mean = (hz * weight).sum(dim=-1, keepdim=True) / count.clamp_min(1.0)
    var = (((hz - mean) ** 2) * weight).sum(dim=-1, keepdim=True) / (count - 1).clamp_min(1.0)
    return (hz - mean) / (var.sqrt() + 1e-8)


class DocPitchAwareRotary(PairRotary):
    """The design document's pitch-aware rotary as written (see the module doc).

    YAML: ``rotary: {type: pitch_aware_doc, conf: {radii: true, radius_ref: 1.0, pitch_bias: 1.0}}``

    Args:
        head_dim: channels per attention head (set by the model); all ``head_dim // 2`` pairs rotate.
        theta: initial value of the learned scalar theta (seed: 10000).
        learn_theta: train theta (seed: ``requires_grad=True``).
        radii: radii ``f0 / radius_ref`` instead of the unit circle.
        radius_ref: divisor of f0 for the radii (the document's code: 1, raw Hz).
        pitch_bias: weight of the ``exp(-|z_q - z_k|)`` score bias (seed: 1; 0 = off).
    """

    needs_f0 = True

    def __init__(
        self,
        head_dim: int,
        theta: float = 10000.0,
        learn_theta: bool = True,
        radii: bool = True,
        radius_ref: float = 1.0,
        pitch_bias: float = 1.0,
    ) -> None:
        n_pairs = head_dim // 2
        if n_pairs < 2:
            raise ValueError(f"pitch_aware_doc: head_dim must be >= 4 (a mel ladder of >= 2 pairs), got {head_dim}")
        if radius_ref <= 0 or pitch_bias < 0:
            raise ValueError("pitch_aware_doc: need radius_ref > 0 and pitch_bias >= 0")
        super().__init__(head_dim, n_pairs)
        self.theta = nn.Parameter(torch.tensor(float(theta)), requires_grad=learn_theta)
        self.register_buffer("mel_term", doc_mel_term(n_pairs), persistent=False)
        self.use_radii = radii
        self.radius_ref = float(radius_ref)
        self.pitch_bias = float(pitch_bias)

    def _hz(self, positions: Tensor, f0: Optional[F0Track]) -> Optional[Tensor]:
        if f0 is None:
            return None
        return f0.on_frames(positions.shape[-1], "pitch_aware_doc rotary").to(self.mel_term.device)

    def raw_angles(self, positions: Tensor, f0: Optional[F0Track] = None) -> Tensor:
        """``p_t * (theta + f0_t) / 220 * ladder_i``: (T, F) without f0, else (B, T, F).

        In the document's order of float32 operations (``theta_freqs``), so that the angles
        match its code to the last bit."""
        hz = self._hz(positions, f0)
        theta = self.theta.to(torch.float32)
        if hz is not None:
            theta = (hz + theta).unsqueeze(-1)  # (B, T, 1), the document's "f0 + self.theta"
        freqs = (theta / REFERENCE_HZ) * 700 * self.mel_term / 1000  # (F,) or (B, T, F)
        return positions.to(torch.float32).unsqueeze(-1) * freqs

    def radius(self, positions: Tensor, f0: Optional[F0Track] = None) -> Optional[Tensor]:
        """(B, T, 1) ``f0 / radius_ref`` when ``radii`` is on and f0 is given, else None (unit circle)."""
        hz = self._hz(positions, f0)
        if not self.use_radii or hz is None:
            return None
        return (hz / self.radius_ref).unsqueeze(-1)

    def score_bias(self, q_f0: Optional[F0Track], k_f0: Optional[F0Track]) -> Optional[Tensor]:
        """(B, 1, T, S) ``pitch_bias * exp(-|z_q - z_k|)``, or None (off, or no f0)."""
        if self.pitch_bias == 0.0 or q_f0 is None or k_f0 is None:
            return None
        z_q = z_normalise(q_f0.hz.to(torch.float32), q_f0.valid)
        z_k = z_normalise(k_f0.hz.to(torch.float32), k_f0.valid)
        distance = (z_q[:, :, None] - z_k[:, None, :]).abs()
        return (self.pitch_bias * torch.exp(-distance))[:, None]

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, theta={float(self.theta.detach()):.1f}, radii={self.use_radii}, "
            f"radius_ref={self.radius_ref}, pitch_bias={self.pitch_bias}"
        )
