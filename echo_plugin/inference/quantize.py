"""ESPnet's decoding options ``quantize_asr_model`` / ``quantize_modules`` / ``quantize_dtype``, applied
after Echo's strict weight loading (ESPnet applies them while Speech2Text is built, before the weights).

PyTorch's dynamic quantization (weights int8 or float16, activations quantized per call) of every module of
the named types (``Linear`` by default, as ESPnet's) in the whole model, in place, so the beam search's
scorers, which hold the decoder and the CTC head, use the quantized layers. Modules that must be prepared
first (a pretrained Whisper front end: its own ``Linear`` subclass, its feature cache) have a
``quantize_int8()`` of their own, called first for int8.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import nn

QUANTIZE_OPTIONS = ("quantize_asr_model", "quantize_modules", "quantize_dtype")
"""Speech2Text's quantization options (its ``quantize_lm`` is ESPnet's own: Echo's LM-free decoding)."""


def quantize_model(model: nn.Module, modules: Sequence[str] = ("Linear",), dtype: str = "qint8") -> int:
    """Quantize ``model`` in place as ESPnet's ``quantize_asr_model`` would -> the modules quantized."""
    if dtype not in ("qint8", "float16"):
        raise ValueError(f"quantize_dtype {dtype!r}: qint8 or float16 (PyTorch's dynamic quantization)")
    unknown = [name for name in modules if not isinstance(getattr(nn, name, None), type)]
    if unknown:
        raise ValueError(f"quantize_modules: {', '.join(unknown)} not torch.nn module types")
    if dtype == "qint8":
        for module in list(model.modules()):
            if hasattr(module, "quantize_int8"):
                module.quantize_int8()
    with warnings.catch_warnings():  # eager-mode quantization's deprecation notice (still supported)
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(model, {getattr(nn, name) for name in modules},
                                               dtype=getattr(torch, dtype), inplace=True)
    return sum(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in model.modules())
