"""FreezingASRModel: the Echo ASR model with a freezing strategy (``model: echo_freeze``).

``model_conf: {freeze: <FREEZE spec>, ...ESPnet's model options}``::

    freeze: none                  full fine-tuning (the default)
    freeze: encoder               frontend / normalize / encoder fixed; decoder and CTC train
    freeze: encoder_and_primary   only the dual decoder's secondary cross-attentions and gates train
    freeze: {type: two_stage, conf: {switch_step: 500}}   encoder_and_primary for 500 steps, then none

Before every training forward the strategy sets ``requires_grad`` from the step
counter ``freeze_step`` (a buffer, so a resumed run continues where it stopped;
validation passes do not count). Parameters already frozen by ESPnet's
``--freeze_param`` stay frozen. ESPnet's optimizer holds every parameter; one
without a gradient is skipped by it, so no update and no weight decay.

Multi-GPU DDP registers only parameters that require gradients when it is
built: ``two_stage`` is refused with more than one process (run the stages as two
trainings instead; the fixed strategies work with DDP).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

from echo_plugin.asr.espnet_model import EchoASRModel, extend_init_signature
from echo_plugin.catalog import FREEZE
from echo_plugin.registry import Spec


@extend_init_signature(freeze="none")
class FreezingASRModel(EchoASRModel):
    """EchoASRModel (ESPnet's arguments) plus ``freeze``, a FREEZE spec."""

    def __init__(self, *args: Any, freeze: Spec = "none", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.freeze_strategy = FREEZE.build(freeze)
        self.freeze_strategy.check(self)
        if self.freeze_strategy.switch_steps() and _world_size() > 1:
            raise NotImplementedError(
                f"freeze {freeze} changes the trainable set during training, which DDP ({_world_size()} processes) "
                "cannot follow: train the first stage, then start a second run with freeze: none and --init_param"
            )
        self.register_buffer("freeze_step", torch.zeros((), dtype=torch.long))
        self._base_trainable: Optional[Dict[str, bool]] = None
        self._applied_step: Optional[int] = None

    def apply_freeze(self, step: int) -> None:
        """Set ``requires_grad`` of every parameter for training step ``step``."""
        params = dict(self.named_parameters())
        if self._base_trainable is None:  # what ESPnet (--freeze_param) left trainable
            self._base_trainable = {name: p.requires_grad for name, p in params.items()}
        for name, p in params.items():
            p.requires_grad_(self._base_trainable[name] and self.freeze_strategy.trainable(name, step))
        if self._applied_step is None or step in self.freeze_strategy.switch_steps():
            n_train = sum(p.numel() for p in params.values() if p.requires_grad)
            n_all = sum(p.numel() for p in params.values())
            logging.info("freeze at step %d: %d of %d parameters train", step, n_train, n_all)
        self._applied_step = step

    def forward(
        self, speech: Tensor, speech_lengths: Tensor, text: Tensor, text_lengths: Tensor, **kwargs: Any
    ) -> Tuple[Tensor, Dict[str, Tensor], Tensor]:
        if self.training and torch.is_grad_enabled():
            self.apply_freeze(int(self.freeze_step))
            self.freeze_step += 1
        return super().forward(speech, speech_lengths, text, text_lengths, **kwargs)


def _world_size() -> int:
    """Number of distributed processes (1 without torch.distributed)."""
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
