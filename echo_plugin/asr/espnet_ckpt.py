"""ESPnet ``TransformerDecoder`` state dicts (e.g. ``exp/*/valid.acc.ave.pth``) for the dual decoder.

ESPnet's pre-norm decoder layer is the Whisper layout under other names::

    embed.0 -> token_embedding      (embed.1 = PositionalEncoding: x * sqrt(D) + sinusoids, no weights)
    decoders.<i>.self_attn.linear_{q,k,v,out} -> blocks.<i>.attn.{query,key,value,out}
    decoders.<i>.src_attn.*                    -> blocks.<i>.cross_attn.*      (the primary)
    decoders.<i>.feed_forward.w_1 / w_2        -> blocks.<i>.mlp.0 / mlp.2     (ReLU)
    decoders.<i>.norm1 / norm2 / norm3         -> attn_ln / cross_attn_ln / mlp_ln   (eps 1e-12)
    after_norm -> ln,  output_layer -> output_layer

Decoders built with ``concat_after``, ``qk_norm`` or ``input_layer: linear`` have keys
with no place here and are refused by name. The number of heads is not stored in the
weights: the dual decoder's ``attention_heads`` must match the ESPnet config.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping

from torch import Tensor

from echo_plugin.asr.warm_start import Converted, WarmStartError, read_checkpoint, rename, strip_prefix

PROJECTIONS = {"linear_q": "query", "linear_k": "key", "linear_v": "value", "linear_out": "out"}
LAYER = {
    **{f"self_attn.{k}": f"attn.{v}" for k, v in PROJECTIONS.items()},
    **{f"src_attn.{k}": f"cross_attn.{v}" for k, v in PROJECTIONS.items()},
    "feed_forward.w_1": "mlp.0",
    "feed_forward.w_2": "mlp.2",
    "norm1": "attn_ln",
    "norm2": "cross_attn_ln",
    "norm3": "mlp_ln",
}


def read_espnet_decoder(path: str | Path, prefix: str = "decoder.") -> Dict[str, Tensor]:
    """The decoder's tensors (``prefix`` stripped) from an ESPnet model state dict file."""
    state = read_checkpoint(path)
    if not isinstance(state, Mapping):
        raise WarmStartError(f"{path}: expected a state dict, got {type(state).__name__}")
    part = strip_prefix(state, prefix)
    if "embed.0.weight" not in part:
        raise WarmStartError(f"{path}: no '{prefix}embed.0.weight': not an ESPnet TransformerDecoder under '{prefix}'")
    return part


def decoder_arch(state: Mapping[str, Tensor]) -> Dict[str, Any]:
    """DualCrossAttentionDecoder arguments that reproduce the stored TransformerDecoder (heads excepted)."""
    layers = {k.split(".")[1] for k in state if k.startswith("decoders.")}
    return {
        "linear_units": int(state["decoders.0.feed_forward.w_1.weight"].shape[0]) if layers else 1,
        "num_blocks": len(layers),
        "position": "sinusoidal",
        "activation": "relu",
        "norm_eps": 1e-12,
        "key_bias": True,
        "output_bias": "output_layer.bias" in state,
        "tie_embeddings": False,
    }


LEGACY = ("embed.1.pe",)
"""Sinusoid tables that ESPnet before v.0.5.3 stored in checkpoints; recomputed, not weights."""


def convert_decoder(state: Mapping[str, Tensor]) -> Converted:
    """ESPnet decoder tensors (prefix stripped) under dual-decoder names."""
    return rename(
        {k: v for k, v in state.items() if k not in LEGACY},
        exact={},
        modules={"embed.0": "token_embedding", "after_norm": "ln", "output_layer": "output_layer"},
        layers=LAYER,
        layer_prefix="decoders",
    )
