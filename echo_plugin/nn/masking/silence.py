"""Which encoder frames are "zero" keys: silence, found in the input features.

Definition (kept simple on purpose):

1. Per input frame, its level is the mean of its features over the feature axis
   (for log-mel features: the mean log energy of the frame).
2. A real frame is *silent* when its level lies more than ``threshold`` below the
   loudest real frame of the same utterance, or when all its features are exactly
   zero. Relative to the loudest frame, the rule does not change under a per-bin
   shift of the features (ESPnet's default ``utterance_mvn`` subtracts one). For
   natural-log mel power one unit is ~4.34 dB, so ``threshold=7`` is ~30 dB.
3. After subsampling, a frame is silent when *every* input frame under its
   receptive field is silent (a min-pool with the time geometry of each
   ``nn.Conv2d`` of the input layer; no conv = frame rate unchanged).

Padding frames are never "silent": they are padding, handled by the key padding mask.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def frame_silence(feats: Tensor, lengths: Optional[Tensor], threshold: float) -> Tensor:
    """(B, T, F) features, (B,) lengths or None -> (B, T) bool, True = silent real frame."""
    level = feats.float().mean(dim=-1)
    steps = torch.arange(feats.size(1), device=feats.device)
    real = torch.ones_like(level, dtype=torch.bool) if lengths is None else steps < lengths.to(feats.device)[:, None]
    loudest = level.masked_fill(~real, float("-inf")).amax(dim=1, keepdim=True)
    silent = (level < loudest - threshold) | (feats == 0).all(dim=-1)
    return silent & real


def subsample_silence(silent: Tensor, embed: nn.Module) -> Tensor:
    """(B, T) silence at the input rate -> (B, T') at the rate after ``embed``'s time convolutions.

    Mirrors the frame arithmetic of ESPnet's Conv2dSubsampling* (time is the first
    kernel axis of each ``nn.Conv2d``): an output frame is silent only if all the
    input frames it sees are.
    """
    x = silent.float().unsqueeze(1)  # (B, 1, T)
    for conv in embed.modules():
        if isinstance(conv, nn.Conv2d):
            x = -F.max_pool1d(
                -x,
                kernel_size=conv.kernel_size[0],
                stride=conv.stride[0],
                padding=conv.padding[0],
                dilation=conv.dilation[0],
            )
    return x.squeeze(1) > 0.5
