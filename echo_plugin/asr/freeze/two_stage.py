"""``freeze: {type: two_stage, conf: {switch_step: N}}``: warm start frozen, then fine-tune."""
from __future__ import annotations

from torch import nn

from echo_plugin.asr.freeze.base import FreezeStrategy
from echo_plugin.catalog import FREEZE
from echo_plugin.registry import Spec


class TwoStage(FreezeStrategy):
    """``first`` for training steps 0 .. switch_step - 1, then ``then``.

    Args:
        switch_step: first step of the second stage (steps = training forward passes,
            i.e. batches x accum_grad; one epoch = number of training batches).
        first: FREEZE spec of the warm-start stage (default ``encoder_and_primary``).
        then: FREEZE spec afterwards (default ``none``: everything trains).
    """

    def __init__(self, switch_step: int, first: Spec = "encoder_and_primary", then: Spec = "none") -> None:
        if int(switch_step) < 0:
            raise ValueError(f"two_stage: switch_step must be >= 0, got {switch_step}")
        self.switch_step = int(switch_step)
        self.first = FREEZE.build(first)
        self.then = FREEZE.build(then)

    def trainable(self, name: str, step: int) -> bool:
        return (self.first if step < self.switch_step else self.then).trainable(name, step)

    def check(self, model: nn.Module) -> None:
        self.first.check(model)
        self.then.check(model)

    def switch_steps(self) -> tuple[int, ...]:
        return (self.switch_step,)
