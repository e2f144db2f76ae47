"""DualCrossAttentionDecoder: a Whisper-layout decoder with primary + secondary cross-attention per layer.

``decoder: dual`` in ESPnet YAML. Each layer (:class:`DualDecoderLayer`) runs
causal self-attention, then two cross-attentions over the same encoder output,
fused per token by ``alpha = sigmoid(MLP([query; primary; secondary]))``, then
the MLP. Positions come from the POSITION table (``learned`` as Whisper,
``sinusoidal`` as ESPnet, ``rotary``).

Warm start (strict: any missing / unexpected key or shape mismatch fails, by name):

- ``whisper_checkpoint: model.pt`` (openai-whisper format; also CTranslate2 and transformers
  Whisper weights): the architecture comes from the checkpoint's dims; the primary
  cross-attention takes Whisper's cross-attention. From Python,
  :meth:`DualCrossAttentionDecoder.from_whisper` also takes V and D from the checkpoint.
- ``espnet_checkpoint: exp/.../valid.acc.ave.pth`` (+ ``espnet_prefix``, default
  ``decoder.``): an ESPnet TransformerDecoder; ``src_attn`` becomes the primary.

The secondary cross-attention and the gates start fresh (``secondary_init: fresh``) or
the secondary as a copy of the primary (``copy_primary``). ``gate_override: 1.0``
(or :meth:`set_gate_override`) forces the primary path, which then reproduces the
pretrained decoder.

``extra_linear_units: N`` widens every layer's MLP by N hidden units beyond the checkpoint's
(or ``linear_units``): a single-attention control with as many parameters as the dual one. The
warm start fills the first units with the checkpoint's; the new units' input weights keep their
random init and their output weights start at zero, so the widened decoder computes the
pretrained one until training moves them.

Beam search state (one per hypothesis, :mod:`echo_plugin.asr.decoder.beam_cache`): per layer the
self-attention keys/values; the primary and secondary cross-attention keys/values of the encoder
output are projected once per utterance and shared by every hypothesis.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from echo_plugin.asr import espnet_ckpt, whisper_ckpt
from echo_plugin.asr.decoder.base import AttentionDecoder, DecoderDims, teacher_forcing_inputs
from echo_plugin.asr.warm_start import Converted, WarmStartError, load_strict
from echo_plugin.catalog import ATTENTION, POSITION
from echo_plugin.nn.dual_layer import DualDecoderLayer, DualGate, drop_key_bias
from echo_plugin.registry import Spec

FRESH_PARTS = (".secondary_attn.", ".gate.")
"""Parameter-name parts of the dual additions (no pretrained counterpart)."""


def is_dual_addition(name: str) -> bool:
    """True for a parameter of a secondary cross-attention or a gate (name relative to any prefix)."""
    return any(part in f".{name}" for part in FRESH_PARTS)


@dataclass
class DualLayerExtras:
    """One layer's analysis outputs: cross-attention maps (B, H, L, T) and the gate alpha (B, L, 1)."""

    primary_attn: Tensor
    secondary_attn: Tensor
    gate: Tensor


@dataclass(frozen=True)
class WhisperWeights:
    """Whisper weights as :func:`whisper_ckpt.read_whisper` returns them (dims, openai-whisper state
    dict) and the path read; ``whisper_checkpoint`` takes one in place of a path (read once)."""

    path: str
    dims: Dict[str, int]
    state: Dict[str, Tensor]

    @classmethod
    def read(cls, path: str | Path) -> WhisperWeights:
        dims, state = whisper_ckpt.read_whisper(path)
        return cls(str(path), dims, state)


def _copy_primary(layer: DualDecoderLayer) -> None:
    layer.secondary_attn.load_state_dict(layer.cross_attn.state_dict())


SECONDARY_INIT: Dict[str, Callable[[DualDecoderLayer], None]] = {
    "fresh": lambda layer: None,
    "copy_primary": _copy_primary,
}


class DualCrossAttentionDecoder(AttentionDecoder):
    """Dual cross-attention decoder for ESPnet's joint CTC/attention ASR model (the :mod:`.base` convention).

    Args:
        vocab_size: V (set by ESPnet).  encoder_output_size: D, the decoder width (set by ESPnet).
        attention_heads, linear_units, num_blocks: layer sizes.
        dropout_rate: embedding and residual dropout.
        self_attention_dropout_rate, src_attention_dropout_rate: attention-weight dropout.
        position: POSITION spec: ``learned`` (``conf: {max_positions}``), ``sinusoidal``, ``rotary``
            (``conf: {rotary: ROTARY spec}``).
        activation: MLP activation (``gelu``, ``relu``, ``swish``).  norm_eps: LayerNorm epsilon.
        key_bias: bias on key projections (Whisper: none).  output_bias: bias on the output layer.
        tie_embeddings: output projection = token embedding matrix.
        self_attention, cross_attention: ATTENTION specs (both cross-attentions use the latter).
        gate_hidden: gate MLP width (default D).  gate_init_bias: initial gate logit bias.
        gate_override: constant alpha instead of the gates (1.0 = primary only), or None.
        secondary_init: ``fresh`` or ``copy_primary`` (applied after any warm start).
        extra_linear_units: MLP hidden units added to ``linear_units`` (or the checkpoint's), zero-output at start.
        whisper_checkpoint: Whisper weights (any format :func:`whisper_ckpt.read_whisper` reads, or
            :class:`WhisperWeights`); their dims set the architecture (see :meth:`from_whisper`).
        espnet_checkpoint: ESPnet model state dict holding a TransformerDecoder under ``espnet_prefix``.
    """

    CACHE_PARTS = 3  # per layer: self-attention, primary and secondary cross-attention

    def __init__(
        self,
        vocab_size: int,
        encoder_output_size: int,
        attention_heads: int = 4,
        linear_units: int = 1024,
        num_blocks: int = 3,
        dropout_rate: float = 0.1,
        self_attention_dropout_rate: float = 0.0,
        src_attention_dropout_rate: float = 0.0,
        position: Spec = "learned",
        activation: str = "gelu",
        norm_eps: float = 1e-5,
        key_bias: bool = True,
        output_bias: bool = True,
        tie_embeddings: bool = False,
        self_attention: Spec = "standard",
        cross_attention: Spec = "standard",
        gate_hidden: Optional[int] = None,
        gate_init_bias: float = 0.0,
        gate_override: Optional[float] = None,
        secondary_init: str = "fresh",
        extra_linear_units: int = 0,
        whisper_checkpoint: Union[str, WhisperWeights, None] = None,
        espnet_checkpoint: Optional[str] = None,
        espnet_prefix: str = "decoder.",
    ) -> None:
        super().__init__()
        if secondary_init not in SECONDARY_INIT:
            raise ValueError(f"secondary_init '{secondary_init}': known {', '.join(SECONDARY_INIT)}")
        if extra_linear_units < 0:
            raise ValueError(f"extra_linear_units must be 0 or more, got {extra_linear_units}")
        arch = dict(
            attention_heads=attention_heads, linear_units=linear_units, num_blocks=num_blocks, position=position,
            activation=activation, norm_eps=norm_eps, key_bias=key_bias, output_bias=output_bias,
            tie_embeddings=tie_embeddings,
        )  # fmt: skip
        warm = _read_warm_start(whisper_checkpoint, espnet_checkpoint, espnet_prefix, vocab_size, encoder_output_size)
        if warm is not None:
            _take_arch(arch, warm[1], warm[2])
        d_model = encoder_output_size
        dims = self.dims = DecoderDims(
            vocab_size, d_model, arch["attention_heads"], arch["linear_units"] + extra_linear_units, arch["num_blocks"]
        )
        self.gate_override = gate_override
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.token_embedding.weight, std=d_model**-0.5)
        self.position = POSITION.build(arch["position"], d_model=d_model)
        self.embed_dropout = nn.Dropout(dropout_rate)
        heads = dims.attention_heads

        def attention(spec: Spec, dropout: float, rotary: Spec) -> nn.Module:
            module = ATTENTION.build(spec, d_model=d_model, n_heads=heads, dropout=dropout, rotary=rotary)
            return module if arch["key_bias"] else drop_key_bias(module)

        self.blocks = nn.ModuleList(
            DualDecoderLayer(
                attention(self_attention, self_attention_dropout_rate, self.position.self_rotary),
                attention(cross_attention, src_attention_dropout_rate, "none"),
                attention(cross_attention, src_attention_dropout_rate, "none"),
                DualGate(d_model, gate_hidden or d_model, gate_init_bias),
                d_model,
                dims.linear_units,
                arch["activation"],
                dropout_rate,
                arch["norm_eps"],
            )
            for _ in range(dims.num_blocks)
        )
        self.ln = nn.LayerNorm(d_model, eps=arch["norm_eps"])
        self.output_layer = nn.Linear(d_model, vocab_size, bias=arch["output_bias"])
        if arch["tie_embeddings"]:
            self.output_layer.weight = self.token_embedding.weight
        if warm is not None:
            if extra_linear_units:
                _widen_mlp(warm[0], self.state_dict())
            fresh = load_strict(self, warm[0], is_dual_addition, warm[2])
            logging.info("%s: %d tensors loaded; fresh: %s", warm[2], len(warm[0].state), ", ".join(fresh) or "none")
        for block in self.blocks:
            SECONDARY_INIT[secondary_init](block)

    @classmethod
    def from_whisper(cls, checkpoint: str | Path, **conf: Any) -> DualCrossAttentionDecoder:
        """The decoder warm-started from Whisper weights, its vocabulary V and width D the checkpoint's.

        ``checkpoint``: any format :func:`whisper_ckpt.read_whisper` reads (read once); ``conf``: the
        other constructor arguments (``gate_override``, ``secondary_init``, dropout rates, ...).
        """
        weights = WhisperWeights.read(checkpoint)
        return cls(weights.dims["n_vocab"], weights.dims["n_text_state"], whisper_checkpoint=weights, **conf)

    def set_gate_override(self, value: Optional[float]) -> None:
        """Use a constant alpha in every layer (1.0 = primary cross-attention only); None = learned gates."""
        self.gate_override = value

    def _embed(self, tokens: Tensor, positions: Tensor) -> Tensor:
        """tokens (B, L), positions (L,) -> (B, L, D)."""
        return self.embed_dropout(self.position(self.token_embedding(tokens), positions))

    def _logits(self, x: Tensor) -> Tensor:
        return self.output_layer(self.ln(x))

    def _block_options(self) -> Dict[str, Any]:
        return {"gate_override": self.gate_override}

    def forward_extras(
        self, hs_pad: Tensor, hlens: Tensor, ys_in_pad: Tensor, ys_in_lens: Tensor
    ) -> Tuple[Tensor, List[DualLayerExtras]]:
        """As :meth:`forward`, plus per-layer maps: logits (B, L, V) and one DualLayerExtras per layer.

        Attention maps are computed explicitly (analysis only; :meth:`forward` stays on the fused kernel).
        """
        inputs = teacher_forcing_inputs(hs_pad, hlens, ys_in_pad, ys_in_lens)
        x = self._embed(ys_in_pad, inputs.positions)
        extras: List[DualLayerExtras] = []
        for block in self.blocks:
            x, maps = block.forward_with_weights(x, inputs, self.gate_override)
            extras.append(DualLayerExtras(maps.primary, maps.secondary, maps.gate))
        return self._logits(x), extras


def _read_warm_start(
    whisper_checkpoint: Union[str, WhisperWeights, None],
    espnet_checkpoint: Optional[str],
    espnet_prefix: str,
    vocab_size: int,
    d_model: int,
) -> Optional[Tuple[Converted, Dict[str, Any], str]]:
    """(converted tensors, architecture, description) of the requested checkpoint, or None."""
    if whisper_checkpoint and espnet_checkpoint:
        raise ValueError("give whisper_checkpoint or espnet_checkpoint, not both")
    if whisper_checkpoint:
        weights = whisper_checkpoint
        if not isinstance(weights, WhisperWeights):
            weights = WhisperWeights.read(weights)
        dims, source = weights.dims, f"Whisper checkpoint {weights.path}"
        sizes = {"n_vocab": (dims["n_vocab"], vocab_size), "n_text_state": (dims["n_text_state"], d_model)}
        _check_sizes(source, sizes)
        return whisper_ckpt.convert_decoder(weights.state), whisper_ckpt.decoder_arch(dims), source
    if espnet_checkpoint:
        state = espnet_ckpt.read_espnet_decoder(espnet_checkpoint, espnet_prefix)
        source = f"ESPnet checkpoint {espnet_checkpoint} ({espnet_prefix}*)"
        vocab, width = state["embed.0.weight"].shape
        _check_sizes(source, {"vocabulary": (int(vocab), vocab_size), "width": (int(width), d_model)})
        return espnet_ckpt.convert_decoder(state), espnet_ckpt.decoder_arch(state), source
    return None


def _widen_mlp(converted: Converted, target: Mapping[str, Tensor]) -> None:
    """Pad the checkpoint's MLP tensors to the model's wider MLP, in place: the new hidden units' input
    rows (``mlp.0``) keep the model's init, their output columns (``mlp.2.weight``) are zero."""
    for key, value in list(converted.state.items()):
        if key not in target or not key.endswith(("mlp.0.weight", "mlp.0.bias", "mlp.2.weight")):
            continue
        axis = 1 if key.endswith("mlp.2.weight") else 0  # the hidden-unit axis
        have, want = list(value.shape), list(target[key].shape)
        narrower = have[axis] < want[axis] and have[:axis] + have[axis + 1:] == want[:axis] + want[axis + 1:]
        if not narrower:
            continue  # equal, or a mismatch load_strict reports by name
        fill = torch.zeros_like(target[key]) if axis == 1 else target[key].clone()
        fill.narrow(axis, 0, have[axis]).copy_(value)
        converted.state[key] = fill


def _check_sizes(source: str, sizes: Mapping[str, Tuple[int, int]]) -> None:
    """Fail when a size fixed by ESPnet (token list, encoder width) differs from the checkpoint's."""
    bad = [f"{name} {ckpt} in the checkpoint vs {model} here" for name, (ckpt, model) in sizes.items() if ckpt != model]
    if bad:
        raise WarmStartError(
            f"{source}: {'; '.join(bad)} (the token list and the encoder output size must match the checkpoint)"
        )


def _take_arch(arch: Dict[str, Any], from_ckpt: Mapping[str, Any], source: str) -> None:
    """Overwrite architecture arguments with the checkpoint's, logging any that change."""
    for key, value in from_ckpt.items():
        if arch[key] != value:
            logging.info("%s sets %s = %r (config had %r)", source, key, value, arch[key])
        arch[key] = value
