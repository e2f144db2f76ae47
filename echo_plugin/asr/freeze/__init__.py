"""Freezing strategies (``echo_plugin.catalog.FREEZE``)."""
from echo_plugin.asr.freeze.base import FreezeStrategy
from echo_plugin.asr.freeze.encoder import FreezeEncoder
from echo_plugin.asr.freeze.encoder_and_primary import FreezeEncoderAndPrimary
from echo_plugin.asr.freeze.none import NoFreeze
from echo_plugin.asr.freeze.two_stage import TwoStage

__all__ = ["FreezeStrategy", "FreezeEncoder", "FreezeEncoderAndPrimary", "NoFreeze", "TwoStage"]
