"""Standard RoPE: ``angle_{t,i} = rot_scale * t * theta ** (-2i / rot_dim)``, unit radius."""
from __future__ import annotations

from typing import Optional

from echo_plugin.nn.rotary.base import LadderRotary, geometric_ladder, pair_count


class StandardRotary(LadderRotary):
    """Rotates the first ``rot_dim`` channels of each head by position; the rest pass through.

    YAML: ``rotary: {type: standard, conf: {theta: 10000.0, rot_dim: 32}}``

    Args:
        head_dim: channels per attention head (set by the model).
        theta: base of the geometric frequency ladder; negative reverses the rotation.
        rot_dim: rotated channels (even, <= head_dim); default all.
        rot_count: rotated pairs, instead of ``rot_dim``.
        rot_scale: multiplies every angle.
    """

    def __init__(
        self,
        head_dim: int,
        theta: float = 10000.0,
        rot_dim: Optional[int] = None,
        rot_count: Optional[int] = None,
        rot_scale: float = 1.0,
    ) -> None:
        n_pairs = pair_count(head_dim, rot_dim, rot_count)
        super().__init__(head_dim, geometric_ladder(theta, n_pairs), rot_scale)
        self.theta = theta

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, theta={self.theta}"
