"""A minimal, independent re-implementation of openai-whisper's forward pass, for warm-start tests.

Written from the published architecture (not imported: openai-whisper is not a dependency):
attention scales q and k by dh^-0.25 each, keys have no bias, the decoder adds a
(-inf above the diagonal) causal mask and learned positions, logits use the token
embedding matrix; the encoder is conv1 / conv2 (stride 2) with GELU, [sin | cos]
sinusoids, pre-norm blocks and ln_post.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TINY_DIMS: Dict[str, int] = dict(
    n_mels=6, n_audio_ctx=5, n_audio_state=16, n_audio_head=2, n_audio_layer=2,
    n_vocab=11, n_text_ctx=12, n_text_state=16, n_text_head=4, n_text_layer=2,
)  # fmt: skip


class RefAttention(nn.Module):
    def __init__(self, n_state: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.query = nn.Linear(n_state, n_state)
        self.key = nn.Linear(n_state, n_state, bias=False)
        self.value = nn.Linear(n_state, n_state)
        self.out = nn.Linear(n_state, n_state)

    def forward(self, x: Tensor, xa: Optional[Tensor] = None, mask: Optional[Tensor] = None) -> Tensor:
        src = x if xa is None else xa
        q, k, v = self.query(x), self.key(src), self.value(src)
        b, t, d = q.shape
        scale = (d // self.n_head) ** -0.25
        q = q.view(b, t, self.n_head, -1).permute(0, 2, 1, 3) * scale
        k = k.view(b, k.shape[1], self.n_head, -1).permute(0, 2, 3, 1) * scale
        v = v.view(b, v.shape[1], self.n_head, -1).permute(0, 2, 1, 3)
        qk = q @ k
        if mask is not None:
            qk = qk + mask[:t, :t]
        w = qk.float().softmax(dim=-1)
        return self.out((w @ v).permute(0, 2, 1, 3).flatten(2))


class RefBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int, cross: bool) -> None:
        super().__init__()
        self.attn, self.attn_ln = RefAttention(n_state, n_head), nn.LayerNorm(n_state)
        self.cross_attn = RefAttention(n_state, n_head) if cross else None
        self.cross_attn_ln = nn.LayerNorm(n_state) if cross else None
        self.mlp = nn.Sequential(nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state))
        self.mlp_ln = nn.LayerNorm(n_state)

    def forward(self, x: Tensor, xa: Optional[Tensor] = None, mask: Optional[Tensor] = None) -> Tensor:
        x = x + self.attn(self.attn_ln(x), mask=mask)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.cross_attn_ln(x), xa)
        return x + self.mlp(self.mlp_ln(x))


def ref_sinusoids(length: int, channels: int) -> Tensor:
    step = math.log(10000) / (channels // 2 - 1)
    inv = torch.exp(-step * torch.arange(channels // 2))
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


class RefEncoder(nn.Module):
    def __init__(self, d: Dict[str, int]) -> None:
        super().__init__()
        s = d["n_audio_state"]
        self.conv1 = nn.Conv1d(d["n_mels"], s, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(s, s, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", ref_sinusoids(d["n_audio_ctx"], s))
        self.blocks = nn.ModuleList(RefBlock(s, d["n_audio_head"], False) for _ in range(d["n_audio_layer"]))
        self.ln_post = nn.LayerNorm(s)

    def forward(self, mel: Tensor) -> Tensor:
        """mel (B, n_mels, 2 * n_audio_ctx) -> (B, n_audio_ctx, D)."""
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).permute(0, 2, 1)
        assert x.shape[1:] == self.positional_embedding.shape
        x = x + self.positional_embedding
        for block in self.blocks:
            x = block(x)
        return self.ln_post(x)


class RefDecoder(nn.Module):
    def __init__(self, d: Dict[str, int]) -> None:
        super().__init__()
        s = d["n_text_state"]
        self.token_embedding = nn.Embedding(d["n_vocab"], s)
        self.positional_embedding = nn.Parameter(torch.empty(d["n_text_ctx"], s))
        self.blocks = nn.ModuleList(RefBlock(s, d["n_text_head"], True) for _ in range(d["n_text_layer"]))
        self.ln = nn.LayerNorm(s)
        self.register_buffer("mask", torch.full((d["n_text_ctx"],) * 2, float("-inf")).triu(1), persistent=False)

    def forward(self, tokens: Tensor, xa: Tensor) -> Tensor:
        """tokens (B, L), xa (B, T, D) -> logits (B, L, V)."""
        x = self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[-1]]
        for block in self.blocks:
            x = block(x, xa, mask=self.mask)
        return self.ln(x) @ self.token_embedding.weight.T


class RefWhisper(nn.Module):
    def __init__(self, dims: Dict[str, int]) -> None:
        super().__init__()
        self.encoder, self.decoder = RefEncoder(dims), RefDecoder(dims)


def random_whisper(dims: Dict[str, int] = TINY_DIMS, seed: int = 0) -> RefWhisper:
    """A reference model with every parameter random (norms included), so misplaced weights show."""
    torch.manual_seed(seed)
    model = RefWhisper(dims)
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm_scale = name.endswith(("ln.weight", "ln_post.weight"))
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if is_norm_scale else 0.0))
    return model.eval()


def save_whisper(model: RefWhisper, dims: Dict[str, int], path: Path, state: Optional[dict] = None) -> Path:
    """Write ``{"dims", "model_state_dict"}`` as openai-whisper does."""
    torch.save({"dims": dict(dims), "model_state_dict": state if state is not None else model.state_dict()}, path)
    return path
