"""Rotary position embeddings: angle/radius sources plus one shared apply step."""
# Importing each variant registers it in ``echo_plugin.nn.registries.ROTARY``.
from echo_plugin.nn.rotary.apply import apply_rotary
from echo_plugin.nn.rotary.none import NoRotary
from echo_plugin.nn.rotary.standard import StandardRotary

__all__ = ["apply_rotary", "NoRotary", "StandardRotary"]
