"""Fused attention under an explicit visibility mask, for variants whose queries are
not one contiguous block (gathered rows, local blocks) so a ``causal`` flag cannot say
which keys each query sees."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_attend(
    q: Tensor, k: Tensor, v: Tensor, visible: Tensor, bias: Optional[Tensor] = None, dropout_p: float = 0.0
) -> Tensor:
    """``softmax(q k^T / sqrt(dh) + bias, hidden keys -inf) v`` on the fused kernel.

    Args:
        q: (..., T, dh).  k, v: (..., S, dh); leading dims broadcast as in SDPA.
        visible: bool broadcastable to (..., T, S), True = query may see key.
        bias: additive float scores broadcastable to (..., T, S), or None.
        dropout_p: attention-weight dropout (0.0 outside training).

    Returns:
        (..., T, dh); a row that sees no key is zeros, never NaN.
    """
    alive = visible.any(dim=-1, keepdim=True)
    visible = visible | ~alive  # an empty row attends everywhere (finite), then is zeroed
    if bias is None:
        mask = visible
    else:
        bias = bias.to(q.dtype)
        mask = torch.where(visible, bias, torch.full((), float("-inf"), dtype=q.dtype, device=q.device))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    return out.masked_fill(~alive, 0.0)
