"""Working memory carried from layer to layer through an encoder pass.

The encoder makes one :class:`WorkingMemory` per forward pass and hands it to
every layer; a layer hands it on to its attention module only when the module's
``uses_memory`` is True. Such a module reads ``state`` (B, M, D) (None before the
first memory layer) as extra keys/values and replaces it by its gated write.
The holder is a plain Python object: ``state`` is rebound to new tensors, never
modified in place, so autograd sees an ordinary chain of layer outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import Tensor


@dataclass
class WorkingMemory:
    """Memory slots of one forward pass.

    Attributes:
        state: (B, M, D) slot contents written by the last memory layer, or None.
    """

    state: Optional[Tensor] = None
