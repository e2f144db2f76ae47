"""Gates on a layer's feed-forward residual update (``echo_plugin.catalog.GATE``).

Per layer group in YAML, ``gate: none`` (default) or e.g.
``gate: {type: t_gate, conf: {num_types: 4}}``; every gate maps
``(x, update[, aux]) -> g * update`` with ``g`` in (0, 1) (see :mod:`.base`).

- ``none``: update unchanged.
- ``mlp_gate``: g = sigmoid(W x + b).
- ``t_gate``: g = sum_k softmax(W_c x + b_c)_k sigmoid(W_k x + b_k).
- ``m_gate``: g = (sigmoid(softmax(x K^T / sqrt(D)) V) + sigmoid(MLP(x))) / 2.
- ``c_gate``: g = sigmoid(W_x x + W_a LN(aux) + b), or sigmoid(W_x x + b) without aux.
- ``additive``: update + g (an inner gate's value added, not multiplied: the design document's
  ``Residual`` as written, see :mod:`.additive`).
"""
from echo_plugin.nn.gates.additive import AdditiveGate
from echo_plugin.nn.gates.base import Gate
from echo_plugin.nn.gates.c_gate import ContextGate
from echo_plugin.nn.gates.m_gate import MemoryGate
from echo_plugin.nn.gates.mlp_gate import MLPGate
from echo_plugin.nn.gates.none import NoGate
from echo_plugin.nn.gates.t_gate import TypeGate

__all__ = ["AdditiveGate", "Gate", "NoGate", "MLPGate", "TypeGate", "MemoryGate", "ContextGate"]
