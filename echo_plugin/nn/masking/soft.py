"""Soft ("zero-value") masking: scores toward zero keys are scaled by a small factor, not set to -inf.

For a zero key ``j`` (padding, and silence frames when the encoder marks them)
the score becomes ``eps * s_ij``; every other score is unchanged; causal masking
stays exact (``-inf``, applied by the kernel). Equivalently (scores are linear in
``k_j``) the key vector is scaled, ``k_j -> eps * k_j``, which is how it runs on
the fused kernel.

What this does to the weights: ``eps * s_ij ~ 0``, so a zero key gets weight
``exp(~0) / Z`` -- the weight of a key whose score is zero, i.e. about that of
an "average" key -- not a weight of ``eps``. Its *value* vector is unchanged, so
with ``padding: true`` the outputs of real frames depend on the padding's values
and on how much padding the batch has (there is none at single-utterance
inference). ``padding: false`` keeps padding hidden exactly and softens only
``zero_keys`` (silence), so outputs do not depend on batching.

Learned scale: ``eps = exp(log min_scale + sigmoid(theta) * (log max_scale - log min_scale))``,
always inside ``(min_scale, max_scale)`` and differentiable everywhere (a hard
clamp would stop its gradient at the bounds). The gradient of ``theta`` is
proportional to ``eps`` itself (tiny at 1e-6): Adam-type optimizers, which
normalise step sizes, still move it; plain SGD hardly does.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from echo_plugin.nn.masking.base import KeyMasking


class SoftMasking(KeyMasking):
    """``masking: {type: soft, conf: {scale, learned, min_scale, max_scale, padding}}``.

    Args:
        scale: the factor ``eps`` (the initial one when learned); ``0 <= scale <= 1``.
        learned: learn ``eps`` (one scalar per attention module) inside ``(min_scale, max_scale)``.
        min_scale, max_scale: the learned range, ``0 < min_scale < scale < max_scale``
            (used only when learned).
        padding: soften padding keys too (True, the design document's behaviour); False hides them
            exactly and softens only ``zero_keys``.
    """

    def __init__(
        self,
        scale: float = 1e-6,
        learned: bool = False,
        min_scale: float = 1e-8,
        max_scale: float = 0.1,
        padding: bool = True,
    ) -> None:
        super().__init__()
        self.learned = bool(learned)
        self.padding = bool(padding)
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        if not 0.0 <= scale <= 1.0:
            raise ValueError(f"soft masking: scale must be in [0, 1], got {scale}")
        if self.learned:
            if not 0.0 < min_scale < scale < max_scale:
                raise ValueError(
                    f"soft masking: a learned scale needs 0 < min_scale < scale < max_scale, "
                    f"got {min_scale}, {scale}, {max_scale}"
                )
            fraction = (math.log(scale) - math.log(min_scale)) / (math.log(max_scale) - math.log(min_scale))
            self.scale_logit = nn.Parameter(torch.tensor(math.log(fraction / (1.0 - fraction))))
        else:
            self.fixed_scale = float(scale)

    def scale(self) -> Tensor:
        """The current ``eps`` as a float32 scalar tensor (differentiable when learned)."""
        if not self.learned:
            return torch.tensor(self.fixed_scale)
        log_min, log_max = math.log(self.min_scale), math.log(self.max_scale)
        eps = torch.exp(log_min + torch.sigmoid(self.scale_logit) * (log_max - log_min))
        return eps.clamp(self.min_scale, self.max_scale)  # float32 rounding of exp(log x) only

    def key_scale(
        self, key_padding_mask: Optional[Tensor], zero_keys: Optional[Tensor], dtype: torch.dtype
    ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        keep = None if self.padding else key_padding_mask
        zero = zero_keys
        if self.padding and key_padding_mask is not None:
            zero = ~key_padding_mask if zero is None else zero | ~key_padding_mask
        if zero is None:
            return None, keep
        ones = torch.ones(zero.shape, dtype=dtype, device=zero.device)
        if not self.learned:
            return ones.masked_fill(zero, self.fixed_scale), keep
        return torch.where(zero, self.scale().to(dtype), ones), keep

    def extra_repr(self) -> str:
        if self.learned:
            eps = self.scale().item()
            return f"learned, scale={eps:.3g} in ({self.min_scale:g}, {self.max_scale:g}), padding={self.padding}"
        return f"scale={self.fixed_scale:g}, padding={self.padding}"
