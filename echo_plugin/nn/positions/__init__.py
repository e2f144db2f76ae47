"""Decoder position schemes; importing this package fills the POSITION registry."""
from echo_plugin.nn.positions import learned, rotary, sinusoidal  # noqa: F401
from echo_plugin.nn.positions.base import POSITION

__all__ = ["POSITION"]
