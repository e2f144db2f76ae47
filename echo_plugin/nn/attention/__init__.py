"""Attention kernels and variants: every variant subclasses :class:`MultiHeadAttention` and
changes only its attention step (see :mod:`echo_plugin.nn.attention.standard`)."""
from echo_plugin.nn.attention.adaptive import AdaptiveAttention
from echo_plugin.nn.attention.curiosity import CuriosityAttention
from echo_plugin.nn.attention.integrated import IntegratedAttention
from echo_plugin.nn.attention.kernel import attend, attend_reference, masked_attend
from echo_plugin.nn.attention.myelinated import MyelinatedAttention
from echo_plugin.nn.attention.standard import AttentionCall, MultiHeadAttention

__all__ = [
    "attend",
    "attend_reference",
    "masked_attend",
    "AttentionCall",
    "MultiHeadAttention",
    "AdaptiveAttention",
    "CuriosityAttention",
    "IntegratedAttention",
    "MyelinatedAttention",
]
