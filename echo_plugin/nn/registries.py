"""The registries of Echo's swappable building blocks."""
from echo_plugin.registry import Registry

ROTARY: Registry = Registry("rotary")
ATTENTION: Registry = Registry("attention")
MASKING: Registry = Registry("masking")
GATE: Registry = Registry("gate")
