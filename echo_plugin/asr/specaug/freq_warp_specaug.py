"""SpecAugment plus a random frequency-axis warp (VTLP-style speaker augmentation).

Vocal tract length moves formants roughly proportionally in frequency, which is
the main way one speaker's digits differ from another's. Each training utterance
gets one factor ``alpha`` drawn uniformly from ``freq_warp_range`` and its feature
bins are resampled as ``y[f] = x[clamp(f / alpha, 0, F - 1)]`` (linear
interpolation between bins). This warps the mel-bin index rather than linear
frequency before the mel filterbank (as the original VTLP does): a cheap
approximation applied after ESPnet's frontend. Then ESPnet's own SpecAug runs.

YAML::

    specaug: freq_warp
    specaug_conf: {freq_warp_range: [0.85, 1.15], apply_time_warp: true, ...}  # + SpecAug's options
"""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import torch
from espnet2.asr.specaug.abs_specaug import AbsSpecAug
from espnet2.asr.specaug.specaug import SpecAug
from torch import Tensor


def warp_frequency(x: Tensor, alpha: Tensor) -> Tensor:
    """x (B, T, F) features, alpha (B,) factors -> (B, T, F) with bins resampled at f / alpha."""
    n_bins = x.shape[-1]
    source = (torch.arange(n_bins, device=x.device, dtype=x.dtype) / alpha.to(x.dtype)[:, None]).clamp(0, n_bins - 1)
    low = source.floor().long()  # (B, F)
    high = (low + 1).clamp(max=n_bins - 1)
    frac = (source - low.to(x.dtype))[:, None, :]  # (B, 1, F)
    gather = lambda index: torch.gather(x, 2, index[:, None, :].expand(-1, x.shape[1], -1))  # noqa: E731
    return gather(low) * (1 - frac) + gather(high) * frac


class FreqWarpSpecAug(AbsSpecAug):
    """Random per-utterance frequency warp, then ESPnet's SpecAug (training only, as ESPnet calls it)."""

    def __init__(self, freq_warp_range: Sequence[float] = (0.85, 1.15), **specaug_conf: Any) -> None:
        super().__init__()
        low, high = float(freq_warp_range[0]), float(freq_warp_range[1])
        if not 0 < low <= high:
            raise ValueError(f"freq_warp_range must satisfy 0 < low <= high, got {freq_warp_range}")
        self.low, self.high = low, high
        self.specaug = SpecAug(**specaug_conf)

    def forward(self, x: Tensor, x_lengths: Optional[Tensor] = None) -> Tuple[Tensor, Optional[Tensor]]:
        """x (B, T, F), x_lengths (B,) -> warped and masked (B, T, F), lengths."""
        alpha = torch.empty(x.shape[0], device=x.device).uniform_(self.low, self.high)
        return self.specaug(warp_frequency(x, alpha), x_lengths)
