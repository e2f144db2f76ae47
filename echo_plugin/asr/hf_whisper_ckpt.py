"""Hugging Face transformers Whisper checkpoints in openai-whisper's layout.

A transformers Whisper model is a directory with ``config.json`` and its weights
(``model.safetensors``, a sharded ``model.safetensors.index.json``, or ``pytorch_model.bin``),
or a weights file with ``config.json`` beside it. Attention heads are not visible in the
weights, so the config is required. Names (``WhisperForConditionalGeneration``; a bare
``WhisperModel`` lacks the ``model.`` prefix and ``proj_out``), ``i`` a layer::

    model.encoder.conv1.*, model.encoder.conv2.*            encoder.conv1.*, encoder.conv2.*
    model.encoder.embed_positions.weight                    encoder.positional_embedding
    model.encoder.layer_norm.*                              encoder.ln_post.*
    model.{en,de}coder.layers.i.self_attn.{q,k,v,out}_proj  *.blocks.i.attn.{query,key,value,out}
    model.{en,de}coder.layers.i.self_attn_layer_norm        *.blocks.i.attn_ln
    model.decoder.layers.i.encoder_attn.{q,k,v,out}_proj    decoder.blocks.i.cross_attn.{query,key,value,out}
    model.decoder.layers.i.encoder_attn_layer_norm          decoder.blocks.i.cross_attn_ln
    model.{en,de}coder.layers.i.fc1, fc2                    *.blocks.i.mlp.0, mlp.2
    model.{en,de}coder.layers.i.final_layer_norm            *.blocks.i.mlp_ln
    model.decoder.embed_tokens.weight                       decoder.token_embedding.weight
    model.decoder.embed_positions.weight                    decoder.positional_embedding
    model.decoder.layer_norm.*                              decoder.ln.*
    proj_out.weight (optional: tied)                        must equal embed_tokens

Config ``d_model``, ``{en,de}coder_{layers,attention_heads}``, ``num_mel_bins``,
``max_{source,target}_positions``, ``vocab_size`` give openai-whisper's dims; GELU,
``scale_embedding: false`` and FFN width ``4 * d_model`` are checked.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

from echo_plugin.asr.warm_start import WarmStartError, fail_on_mismatches, read_checkpoint

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
ATTENTION = {"q_proj": "query", "k_proj": "key", "v_proj": "value", "out_proj": "out"}
BLOCK = {"self_attn_layer_norm": "attn_ln", "fc1": "mlp.0", "fc2": "mlp.2", "final_layer_norm": "mlp_ln"}


def looks_like_transformers(state: Mapping[str, Any]) -> bool:
    """True for a transformers Whisper state dict (its encoder positions are ``embed_positions``)."""
    return any(str(k).endswith("encoder.embed_positions.weight") for k in state)


def is_transformers_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file() and any((path / f).is_file() for f in WEIGHT_FILES)


def dims_from_config(config: Mapping[str, Any], source: str) -> Dict[str, int]:
    """openai-whisper dims from a transformers WhisperConfig (as a dict), checking the Whisper architecture."""
    needed = (
        "num_mel_bins", "max_source_positions", "d_model", "encoder_attention_heads", "encoder_layers",
        "vocab_size", "max_target_positions", "decoder_attention_heads", "decoder_layers",
    )  # fmt: skip
    absent = [k for k in needed if k not in config]
    if absent:
        raise WarmStartError(f"{source}: config lacks {', '.join(absent)}")
    d = int(config["d_model"])
    wrong = [
        f"{key} = {config[key]!r} (Whisper: {want!r})"
        for key, want in (
            ("activation_function", "gelu"), ("scale_embedding", False),
            ("encoder_ffn_dim", 4 * d), ("decoder_ffn_dim", 4 * d),
        )  # fmt: skip
        if key in config and config[key] != want
    ]
    if wrong:
        raise WarmStartError(f"{source}: not openai-whisper's architecture: {'; '.join(wrong)}")
    return {
        "n_mels": int(config["num_mel_bins"]), "n_audio_ctx": int(config["max_source_positions"]),
        "n_audio_state": d, "n_audio_head": int(config["encoder_attention_heads"]),
        "n_audio_layer": int(config["encoder_layers"]), "n_vocab": int(config["vocab_size"]),
        "n_text_ctx": int(config["max_target_positions"]), "n_text_state": d,
        "n_text_head": int(config["decoder_attention_heads"]), "n_text_layer": int(config["decoder_layers"]),
    }  # fmt: skip


def name_table(dims: Mapping[str, int], prefix: str = "model.") -> Dict[str, str]:
    """openai-whisper key -> transformers key, for every tensor of a model with these dims."""
    table: Dict[str, str] = {}

    def module(openai: str, hf: str, bias: bool = True) -> None:
        table[f"{openai}.weight"] = f"{prefix}{hf}.weight"
        if bias:
            table[f"{openai}.bias"] = f"{prefix}{hf}.bias"

    def attention(openai: str, hf: str) -> None:
        for hf_name, name in ATTENTION.items():
            module(f"{openai}.{name}", f"{hf}.{hf_name}", bias=name != "key")

    module("encoder.conv1", "encoder.conv1")
    module("encoder.conv2", "encoder.conv2")
    table["encoder.positional_embedding"] = f"{prefix}encoder.embed_positions.weight"
    module("encoder.ln_post", "encoder.layer_norm")
    for part, layers in (("encoder", dims["n_audio_layer"]), ("decoder", dims["n_text_layer"])):
        for i in range(layers):
            openai, hf = f"{part}.blocks.{i}", f"{part}.layers.{i}"
            attention(f"{openai}.attn", f"{hf}.self_attn")
            for hf_name, name in BLOCK.items():
                module(f"{openai}.{name}", f"{hf}.{hf_name}")
            if part == "decoder":
                attention(f"{openai}.cross_attn", f"{hf}.encoder_attn")
                module(f"{openai}.cross_attn_ln", f"{hf}.encoder_attn_layer_norm")
    table["decoder.token_embedding.weight"] = f"{prefix}decoder.embed_tokens.weight"
    table["decoder.positional_embedding"] = f"{prefix}decoder.embed_positions.weight"
    module("decoder.ln", "decoder.layer_norm")
    return table


def whisper_from_transformers(
    state: Mapping[str, Tensor], config: Mapping[str, Any], source: str
) -> Tuple[Dict[str, int], Dict[str, Tensor]]:
    """(dims, openai-whisper state dict) of a transformers Whisper state dict, every tensor accounted for.

    Raises:
        WarmStartError naming every missing and unexpected transformers key, and an untied ``proj_out``.
    """
    dims = dims_from_config(config, source)
    prefix = "model." if any(k.startswith("model.encoder.") for k in state) else ""
    table = name_table(dims, prefix)
    missing = sorted(hf for hf in table.values() if hf not in state)
    used = set(table.values())
    problems: List[str] = []
    embed = state.get(f"{prefix}decoder.embed_tokens.weight")
    if "proj_out.weight" in state:
        used.add("proj_out.weight")
        if embed is not None and not torch.equal(state["proj_out.weight"], embed):
            problems.append("proj_out.weight differs from decoder.embed_tokens.weight (Whisper ties them)")
    unexpected = sorted(k for k in state if k not in used)
    fail_on_mismatches(
        f"{source} does not fit openai-whisper's layout",
        (("missing keys", missing), ("unexpected keys", unexpected), ("not Whisper", problems)),
    )
    return dims, {openai: state[hf] for openai, hf in table.items()}


def read_config(path: Path) -> Dict[str, Any]:
    """``config.json`` of a transformers model directory, or beside a weights file."""
    config_file = (path if path.is_dir() else path.parent) / "config.json"
    if not config_file.is_file():
        raise WarmStartError(
            f"{path}: a transformers Whisper state dict needs its config.json beside it (attention heads "
            f"are not in the weights); none at {config_file}"
        )
    with open(config_file, encoding="utf-8") as f:
        return json.load(f)


def read_weights(path: Path) -> Dict[str, Tensor]:
    """The state dict of a transformers weights file (safetensors, sharded index, torch) or directory."""
    if path.is_dir():
        found = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
        if found is None:
            raise WarmStartError(f"{path}: no {' / '.join(WEIGHT_FILES)}")
        path = found
    if path.name.endswith(".index.json"):
        with open(path, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        state: Dict[str, Tensor] = {}
        for shard in shards:
            state.update(read_weights(path.parent / shard))
        return state
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as error:  # pragma: no cover - safetensors comes with transformers
            raise WarmStartError(f"{path}: reading safetensors needs the safetensors package") from error
        return load_file(str(path), device="cpu")
    state = read_checkpoint(path)
    if not isinstance(state, Mapping):
        raise WarmStartError(f"{path}: not a state dict ({type(state).__name__})")
    return dict(state)


def load_whisper_transformers(
    path: str | Path, state: Optional[Mapping[str, Tensor]] = None
) -> Tuple[Dict[str, int], Dict[str, Tensor]]:
    """(dims, openai-whisper state dict) of a transformers Whisper directory or weights file."""
    path = Path(path)
    weights = dict(state) if state is not None else read_weights(path)
    return whisper_from_transformers(weights, read_config(path), f"transformers Whisper checkpoint {path}")
