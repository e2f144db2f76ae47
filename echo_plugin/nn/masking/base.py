"""What a key-masking strategy is: a per-key score scale plus a hard visibility mask.

Attention scores are ``s_ij = q_i . k_j / sqrt(dh)``. A masking strategy decides,
for each key ``j`` of each utterance,

* whether it is hidden exactly (score ``-inf``: the ``keep`` mask, False = hidden);
* a multiplier ``c_j`` of its score (``s_ij -> c_j * s_ij``), or None for all ones.

Because ``s_ij`` is linear in ``k_j``, ``c_j * s_ij = q_i . (c_j k_j) / sqrt(dh)``:
the multiplier is applied by scaling the key vectors, so the fused
``scaled_dot_product_attention`` kernel runs unchanged (:meth:`KeyMasking.forward`).
:meth:`KeyMasking.key_scale` states the definition on scores, which the explicit
reference kernel applies literally; tests check the two agree.

Inputs, both (B, S) bool over every key the attention sees (cache + new keys):

* ``key_padding_mask``: True = real key, False = padding.
* ``zero_keys``: True = a real key that carries no signal (an encoder silence
  frame, see :mod:`echo_plugin.nn.masking.silence`), or None.

Causal masking is not a strategy's business: the kernel always hides future keys
exactly, whatever the strategy does.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn


class KeyMasking(nn.Module):
    """Base class of the MASKING table (``echo_plugin.catalog``; see the module doc)."""

    def key_scale(
        self, key_padding_mask: Optional[Tensor], zero_keys: Optional[Tensor], dtype: torch.dtype
    ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """-> (scale (B, S) of ``dtype`` or None = all ones, keep (B, S) bool or None = all kept)."""
        raise NotImplementedError

    def forward(
        self, k: Tensor, key_padding_mask: Optional[Tensor] = None, zero_keys: Optional[Tensor] = None
    ) -> Tuple[Tensor, Optional[Tensor]]:
        """Fold the score scale into the keys: k (B, H, S, dh) -> (scaled k, keep (B, S) or None)."""
        scale, keep = self.key_scale(key_padding_mask, zero_keys, k.dtype)
        if scale is not None:
            k = k * scale[:, None, :, None].to(k.device)
        return k, keep
