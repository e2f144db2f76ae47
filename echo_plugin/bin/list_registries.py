"""Print every Echo registry and the names each accepts in YAML.

    python -m echo_plugin.bin.list_registries

One line per table: ``<where in YAML>: name, name, ...``. Importing ESPnet is
avoided except for the choice tables' own names (``espnet ...`` lines).
"""
from __future__ import annotations

from typing import Iterable, Iterator

import echo_plugin.asr.freeze  # noqa: F401  (fills the registries)
import echo_plugin.nn.attention  # noqa: F401
import echo_plugin.nn.gates  # noqa: F401
import echo_plugin.nn.masking  # noqa: F401
import echo_plugin.nn.positions  # noqa: F401
import echo_plugin.nn.rotary  # noqa: F401
from echo_plugin import components, optimizers
from echo_plugin.asr.encoder.echo_encoder import INPUT_LAYERS
from echo_plugin.asr.freeze import FREEZE
from echo_plugin.asr.frontend.fusion import FUSION
from echo_plugin.features.extractor import FEATURES
from echo_plugin.nn.attention.curiosity_scores import SCORE
from echo_plugin.nn.layers import ACTIVATIONS, NORMS
from echo_plugin.nn.positions import POSITION
from echo_plugin.nn.registries import ATTENTION, GATE, MASKING, ROTARY


def lines() -> Iterator[str]:
    """The printed lines, in order."""
    tables: Iterable[tuple[str, Iterable[str]]] = (
        ("rotary (layers[].rotary, attention conf rotary_k)", ROTARY.names()),
        ("attention (layers[].attention / self_attention / cross_attention)", ATTENTION.names()),
        ("masking (layers[].masking / self_masking / cross_masking)", MASKING.names()),
        ("gate (layers[].gate)", GATE.names()),
        ("curiosity score (curiosity conf score)", SCORE.names()),
        ("norm (encoder_conf / decoder_conf norm)", NORMS),
        ("activation (encoder_conf / decoder_conf activation)", ACTIVATIONS),
        ("input layer (encoder_conf input_layer)", INPUT_LAYERS),
        ("decoder position (dual decoder_conf position)", POSITION.names()),
        ("frontend feature (frontend_conf features)", FEATURES),
        ("fusion (frontend_conf fusion)", FUSION.names()),
        ("freeze (echo_freeze model_conf freeze)", FREEZE.names()),
        ("optim (top level)", optimizers()),
    )
    for where, names in tables:
        yield f"{where}: {', '.join(sorted(names))}"
    for table, classes in components().items():
        yield f"espnet {table}: {', '.join(sorted(classes))}"


def main() -> None:
    for line in lines():
        print(line)


if __name__ == "__main__":
    main()
