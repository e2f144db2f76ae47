"""Attention kernels and variants."""
# Importing each variant registers it in ``echo_plugin.nn.registries.ATTENTION``.
from echo_plugin.nn.attention.kernel import attend, attend_reference
from echo_plugin.nn.attention.standard import MultiHeadAttention
from echo_plugin.nn.attention.adaptive import AdaptiveAttention
from echo_plugin.nn.attention.curiosity import CuriosityAttention
from echo_plugin.nn.attention.integrated import IntegratedAttention
from echo_plugin.nn.attention.myelinated import MyelinatedAttention

__all__ = ["attend", "attend_reference", "MultiHeadAttention", "CuriosityAttention", "MyelinatedAttention", "IntegratedAttention"]
