"""ESPnet's legacy ``espnet.nets`` parts the plugin builds on, from wherever the installed ESPnet keeps them.

ESPnet up to 202511 ships them as the ``espnet`` package (``espnet.nets...``). ESPnet 202611 moved
them to ``espnet2.legacy.nets`` and made ``espnet`` a small model loader. Every module of the plugin
(and its tests and benchmarks) imports these names from here, so both releases work.
"""
from __future__ import annotations

import importlib
from types import ModuleType


def _nets_package() -> str:
    """``espnet2.legacy.nets`` (ESPnet >= 202611) or ``espnet.nets`` (up to 202511)."""
    try:
        importlib.import_module("espnet2.legacy.nets")
        return "espnet2.legacy.nets"
    except ModuleNotFoundError:
        return "espnet.nets"


NETS = _nets_package()


def nets(module: str) -> ModuleType:
    """The legacy module ``<nets>.<module>``, e.g. ``nets("pytorch_backend.nets_utils")``."""
    return importlib.import_module(f"{NETS}.{module}")


_utils = nets("pytorch_backend.nets_utils")
_subsampling = nets("pytorch_backend.transformer.subsampling")
_transformer = "pytorch_backend.transformer"

make_pad_mask = _utils.make_pad_mask
BatchScorerInterface = nets("scorer_interface").BatchScorerInterface
PositionalEncoding = nets(f"{_transformer}.embedding").PositionalEncoding
Conv2dSubsampling = _subsampling.Conv2dSubsampling
Conv2dSubsampling2 = _subsampling.Conv2dSubsampling2
Conv2dSubsampling6 = _subsampling.Conv2dSubsampling6
Conv2dSubsampling8 = _subsampling.Conv2dSubsampling8
TooShortUttError = _subsampling.TooShortUttError
check_short_utt = _subsampling.check_short_utt
BeamSearch = nets("beam_search").BeamSearch
BatchBeamSearch = nets("batch_beam_search").BatchBeamSearch
CTCPrefixScorer = nets("scorers.ctc").CTCPrefixScorer
LengthBonus = nets("scorers.length_bonus").LengthBonus

__all__ = [
    "NETS", "nets", "make_pad_mask", "BatchScorerInterface", "PositionalEncoding", "Conv2dSubsampling",
    "Conv2dSubsampling2", "Conv2dSubsampling6", "Conv2dSubsampling8", "TooShortUttError", "check_short_utt",
    "BeamSearch", "BatchBeamSearch", "CTCPrefixScorer", "LengthBonus",
]  # fmt: skip
