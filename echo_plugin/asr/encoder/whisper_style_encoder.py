"""WhisperStyleEncoder: Whisper's audio encoder as an ESPnet encoder (``encoder: whisper_style``).

Architecture (openai-whisper ``AudioEncoder``)::

    feats (B, T, n_mels) -> GELU(conv1, k=3) -> GELU(conv2, k=3, stride 2) -> + sinusoids
    -> pre-norm blocks (attn_ln, attn, mlp_ln, mlp) -> ln_post -> (B, T', D), T' = (T - 1) // 2 + 1

Unlike Whisper (fixed 30 s windows) inputs have any length up to ``2 * max_positions``
frames: padded frames are zeroed before each convolution and hidden from
self-attention, so real frames do not depend on the padding. With
``whisper_checkpoint`` the architecture comes from the checkpoint's dims and its
``encoder.*`` weights load strictly; the encoder is otherwise unchanged.
"""
from __future__ import annotations

import logging
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from torch import Tensor, nn

from echo_plugin.asr import whisper_ckpt
from echo_plugin.asr.warm_start import WarmStartError, load_strict
from echo_plugin.catalog import ATTENTION
from echo_plugin.espnet_legacy import make_pad_mask
from echo_plugin.nn.dual_layer import drop_key_bias, mlp


def whisper_sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> Tensor:
    """(length, channels): [sin | cos] halves, timescales geometric from 1 to ``max_timescale``."""
    if channels % 2:
        raise ValueError(f"sinusoids need an even width, got {channels}")
    half = channels // 2
    inv = torch.exp(-math.log(max_timescale) / (half - 1) * torch.arange(half, dtype=torch.float32))
    angles = torch.arange(length, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class WhisperEncoderBlock(nn.Module):
    """x + attn(attn_ln(x)), then x + mlp(mlp_ln(x)) (Whisper names; keys without bias)."""

    def __init__(self, d_model: int, heads: int, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        attn = ATTENTION.build("standard", d_model=d_model, n_heads=heads, dropout=attention_dropout)
        self.attn = drop_key_bias(attn)
        self.attn_ln = nn.LayerNorm(d_model)
        self.mlp = mlp(d_model, 4 * d_model, "gelu")
        self.mlp_ln = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Optional[Tensor]) -> Tensor:
        """x (B, T, D), mask (B, T) True = real frame -> (B, T, D)."""
        attended, _ = self.attn(self.attn_ln(x), key_padding_mask=mask)
        x = x + self.dropout(attended)
        return x + self.dropout(self.mlp(self.mlp_ln(x)))


class WhisperStyleEncoder(AbsEncoder):
    """Whisper's audio encoder on ESPnet features.

    Args:
        input_size: feature channels (``n_mels``; set by ESPnet).
        output_size: width D.  attention_heads: heads.  num_blocks: layers.
        max_positions: rows of the sinusoid table (Whisper: ``n_audio_ctx`` = 1500).
        dropout_rate: residual dropout.  attention_dropout_rate: attention-weight dropout.
        whisper_checkpoint: openai-whisper checkpoint; its dims set the architecture and
            its encoder weights load strictly.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        attention_heads: int = 4,
        num_blocks: int = 4,
        max_positions: int = 1500,
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        whisper_checkpoint: Optional[str] = None,
    ) -> None:
        super().__init__()
        converted = None
        if whisper_checkpoint:
            dims, state = whisper_ckpt.read_whisper(whisper_checkpoint)
            if dims["n_mels"] != input_size:
                raise WarmStartError(
                    f"Whisper checkpoint {whisper_checkpoint} takes n_mels={dims['n_mels']} features but the "
                    f"frontend gives {input_size} (set frontend_conf.n_mels: {dims['n_mels']})"
                )
            arch = whisper_ckpt.encoder_arch(dims)
            output_size, attention_heads = arch["output_size"], arch["attention_heads"]
            num_blocks, max_positions = arch["num_blocks"], arch["max_positions"]
            converted = whisper_ckpt.convert_encoder(state)
        self._output_size = output_size
        self.conv1 = nn.Conv1d(input_size, output_size, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(output_size, output_size, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", whisper_sinusoids(max_positions, output_size))
        self.blocks = nn.ModuleList(
            WhisperEncoderBlock(output_size, attention_heads, dropout_rate, attention_dropout_rate)
            for _ in range(num_blocks)
        )
        self.ln_post = nn.LayerNorm(output_size)
        if converted is not None:
            load_strict(self, converted, lambda name: False, f"Whisper checkpoint {whisper_checkpoint} (encoder)")
            logging.info("WhisperStyleEncoder: %d tensors from %s", len(converted.state), whisper_checkpoint)

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self, xs_pad: Tensor, ilens: Tensor, prev_states: Optional[Tensor] = None
    ) -> Tuple[Tensor, Tensor, None]:
        """xs_pad (B, T, n_mels), ilens (B,) -> (B, T', D), olens (B,), None; T' = (T - 1) // 2 + 1."""
        keep = ~make_pad_mask(ilens, maxlen=xs_pad.size(1)).to(xs_pad.device)  # (B, T)
        x = xs_pad.masked_fill(~keep[..., None], 0.0).transpose(1, 2)  # (B, n_mels, T)
        x = F.gelu(self.conv1(x)).masked_fill(~keep[:, None, :], 0.0)
        x = F.gelu(self.conv2(x)).transpose(1, 2)  # (B, T', D)
        olens = torch.div(ilens - 1, 2, rounding_mode="floor") + 1
        if x.size(1) > self.positional_embedding.size(0):
            raise ValueError(
                f"input of {xs_pad.size(1)} frames gives {x.size(1)} encoder frames, more than "
                f"max_positions={self.positional_embedding.size(0)} (utterance lengths {ilens.tolist()})"
            )
        mask = ~make_pad_mask(olens, maxlen=x.size(1)).to(x.device)
        x = x + self.positional_embedding[: x.size(1)].to(x.dtype)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_post(x), olens, None
