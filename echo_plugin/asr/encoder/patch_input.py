"""Spectrogram patches as encoder tokens, for the axial (time x frequency) rotary.

``encoder_conf: {input_layer: patch2d, layers: [{num: N, rotary: {type: axial, conf: {...}}}]}``

:class:`PatchEmbedding` cuts the (T, F) feature map into non-overlapping patches
of ``time`` frames x ``freq`` bins (the last bins zero-padded to a whole patch),
projects each with one strided Conv2d and gives tokens (B, T', F', D) with
T' = T // time (the Conv2d's own count, so ``subsampled_lengths`` and
``subsampling_factor`` apply) and F' = ceil(F / freq). The encoder attends over
all T' x F' tokens with (time, frequency) positions, then averages each time
step's F' tokens, so CTC and the decoder see (B, T', D) as with any input layer.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

from torch import Tensor, nn

PATCH_TIME = 4  # frames per patch: the time subsampling, as ESPnet's conv2d
PATCH_FREQ = 8  # feature bins per patch


class PatchEmbedding(nn.Module):
    """x (B, T, F), mask -> patch tokens (B, T', F', D), mask (unused, returned as given).

    Args:
        idim: feature bins F.  odim: model width D.  dropout_rate: after the projection.
        pos_enc: ESPnet positional encoding along time (applied to each frequency row), or Dropout.
        time, freq: patch size in frames and bins.
    """

    def __init__(self, idim: int, odim: int, dropout_rate: float, pos_enc: nn.Module,
                 time: int = PATCH_TIME, freq: int = PATCH_FREQ) -> None:
        super().__init__()
        if time < 1 or freq < 1:
            raise ValueError(f"patch size must be positive, got {time} x {freq}")
        self.time, self.freq = time, freq
        self.n_freq = math.ceil(idim / freq)
        self.pad = self.n_freq * freq - idim
        self.conv = nn.Conv2d(1, odim, kernel_size=(time, freq), stride=(time, freq))
        self.norm = nn.LayerNorm(odim)
        self.dropout = nn.Dropout(dropout_rate)
        self.pos_enc = pos_enc

    def forward(self, x: Tensor, mask: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
        if self.pad:
            x = nn.functional.pad(x, (0, self.pad))
        h = self.conv(x.unsqueeze(1))  # (B, D, T', F')
        h = self.dropout(self.norm(h.permute(0, 2, 3, 1)))  # (B, T', F', D)
        batch, frames, n_freq, width = h.shape
        rows = h.transpose(1, 2).reshape(batch * n_freq, frames, width)
        h = self.pos_enc(rows).reshape(batch, n_freq, frames, width).transpose(1, 2)
        return h.contiguous(), mask
