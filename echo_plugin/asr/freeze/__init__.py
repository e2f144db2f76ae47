"""Freezing strategies; importing this package fills the FREEZE registry."""
from echo_plugin.asr.freeze import encoder, encoder_and_primary, none, two_stage  # noqa: F401
from echo_plugin.asr.freeze.base import FREEZE, FreezeStrategy

__all__ = ["FREEZE", "FreezeStrategy"]
