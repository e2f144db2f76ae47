"""How the frontend merges its per-feature encodings (B, T, D) into one (B, T, D) stream.

Strategies are the ``echo_plugin.catalog.FUSION`` table and are picked in YAML with
``fusion: {type: gated, conf: {...}}``. Both built-in strategies first apply
the learnable sigmoid blend of waveform and spectrogram (``blend: true``,
the default, when both are present):

    audio = sigmoid(w) * waveform + (1 - sigmoid(w)) * spectrogram,   w init 0

- ``gated``: per frame, one sigmoid gate per stream from the mean of the
  streams, then a linear map of the gated streams' concatenation, LayerNorm.
  out = LN(W [g_1 * e_1; ...; g_n * e_n]), g_i = sigmoid(a_i . mean_j(e_j) + b_i).
- ``concat``: LN(W [e_1; ...; e_n]).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Sequence

import torch
from torch import Tensor, nn

BLENDED = ("waveform", "spectrogram")


class SigmoidBlend(nn.Module):
    """``sigmoid(w) * waveform + (1 - sigmoid(w)) * spectrogram`` with one learnable scalar ``w``."""

    def __init__(self, init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(float(init)))

    @property
    def mix(self) -> Tensor:
        """The waveform's share, sigmoid(w)."""
        return torch.sigmoid(self.weight)

    def forward(self, waveform: Tensor, spectrogram: Tensor) -> Tensor:
        mix = self.mix
        return mix * waveform + (1 - mix) * spectrogram


class _BlendingFusion(nn.Module):
    """Shared part: the optional waveform/spectrogram blend and the resulting stream names."""

    def __init__(self, features: Sequence[str], blend: bool, blend_init: float) -> None:
        super().__init__()
        self.features = tuple(features)
        self.blend = SigmoidBlend(blend_init) if blend and all(f in features for f in BLENDED) else None
        names: List[str] = [f for f in self.features if self.blend is None or f not in BLENDED]
        if self.blend is not None:
            names.insert(0, "audio")
        self.streams = tuple(names)

    def _blended(self, encoded: Mapping[str, Tensor]) -> List[Tensor]:
        missing = set(self.features) - set(encoded)
        if missing:
            raise KeyError(f"fusion expects encodings of {sorted(missing)}")
        out: Dict[str, Tensor] = dict(encoded)
        if self.blend is not None:
            out["audio"] = self.blend(out["waveform"], out["spectrogram"])
        return [out[name] for name in self.streams]


class GatedFusion(_BlendingFusion):
    """Per-frame sigmoid gate per stream (a context gate), then a linear merge.

    Args:
        d_model: stream width D (set by the frontend).
        features: the frontend's feature names (set by the frontend).
        blend: blend waveform and spectrogram first (when both are present).
        blend_init: initial blend logit (0 -> half each).
    """

    def __init__(self, d_model: int, features: Sequence[str], blend: bool = True, blend_init: float = 0.0) -> None:
        super().__init__(features, blend, blend_init)
        self.gates = nn.Linear(d_model, len(self.streams))
        self.merge = nn.Linear(d_model * len(self.streams), d_model)
        self.norm = nn.LayerNorm(d_model)
        self.last_gates: Tensor | None = None  # (B, T, n_streams), for inspection

    def forward(self, encoded: Mapping[str, Tensor]) -> Tensor:
        streams = self._blended(encoded)
        stacked = torch.stack(streams, dim=-2)  # (B, T, n, D)
        gates = torch.sigmoid(self.gates(stacked.mean(dim=-2)))  # (B, T, n)
        self.last_gates = gates.detach()
        gated = (stacked * gates[..., None]).flatten(-2)
        return self.norm(self.merge(gated))


class ConcatFusion(_BlendingFusion):
    """Concatenate the streams, then a linear map and LayerNorm (no gates)."""

    def __init__(self, d_model: int, features: Sequence[str], blend: bool = True, blend_init: float = 0.0) -> None:
        super().__init__(features, blend, blend_init)
        self.merge = nn.Linear(d_model * len(self.streams), d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, encoded: Mapping[str, Tensor]) -> Tensor:
        return self.norm(self.merge(torch.cat(self._blended(encoded), dim=-1)))
