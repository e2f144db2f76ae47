"""``freeze: encoder_and_primary``: only the dual decoder's secondary cross-attentions and gates train."""
from __future__ import annotations

from torch import nn

from echo_plugin.asr.decoder.dual_decoder import is_dual_addition
from echo_plugin.asr.freeze.base import FreezeStrategy


class FreezeEncoderAndPrimary(FreezeStrategy):
    """Everything pretrained is frozen (encoder, CTC, decoder embedding / self- / primary cross-attention /
    MLP / norms); ``decoder.blocks.<i>.secondary_attn.*`` and ``decoder.blocks.<i>.gate.*`` train."""

    def trainable(self, name: str, step: int) -> bool:
        return name.startswith("decoder.") and is_dual_addition(name)

    def check(self, model: nn.Module) -> None:
        if not any(self.trainable(name, 0) for name, _ in model.named_parameters()):
            raise ValueError(
                f"freeze: encoder_and_primary needs decoder: dual (secondary cross-attention and gates to train); "
                f"the decoder is {type(getattr(model, 'decoder', None)).__name__}"
            )
