"""Hard masking (the default): padding keys get score ``-inf``, every real key is untouched.

``zero_keys`` (silence frames) are real frames and stay fully visible; hiding them
exactly would leave an all-silent utterance with nothing to attend to.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from echo_plugin.nn.masking.base import KeyMasking


class HardMasking(KeyMasking):
    """``masking: hard``: exactly the behaviour of the kernel without a strategy."""

    def key_scale(
        self, key_padding_mask: Optional[Tensor], zero_keys: Optional[Tensor], dtype: torch.dtype
    ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        return None, key_padding_mask
