"""A minimal, independent re-implementation of openai-whisper's forward pass, for warm-start tests.

Written from the published architecture (not imported: openai-whisper is not a dependency):
attention scales q and k by dh^-0.25 each, keys have no bias, the decoder adds a
(-inf above the diagonal) causal mask and learned positions, logits use the token
embedding matrix; the encoder is conv1 / conv2 (stride 2) with GELU, [sin | cos]
sinusoids, pre-norm blocks and ln_post.

Also the same weights in the other formats the loader takes, written here by hand: a
CTranslate2 ``model.bin`` byte by byte (:func:`ct2_variables`, :func:`ct2_bytes`) and
transformers' key names (:func:`hf_state`, :func:`hf_config`).
"""
from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Dict, Optional

import numpy as np
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


# ------------------------------------------------ the same weights in other formats, written here by hand

CT2_DTYPE_IDS = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4}


def ct2_variables(state: Dict[str, Tensor], dims: Dict[str, int], dtype: str = "float32") -> Dict[str, np.ndarray]:
    """openai-whisper tensors laid out as CTranslate2's WhisperSpec variables (fused attention, zero key bias)."""
    n = {k: v.detach().float().numpy() for k, v in state.items()}
    out: Dict[str, np.ndarray] = {}

    def arr(x: np.ndarray) -> np.ndarray:
        return x.astype(dtype)

    def linear(ct2: str, *openai: str, zero_bias_for: str = "") -> None:
        out[f"{ct2}/weight"] = arr(np.concatenate([n[f"{o}.weight"] for o in openai]))
        biases = [
            np.zeros(n[f"{o}.weight"].shape[0], np.float32) if o == zero_bias_for else n[f"{o}.bias"] for o in openai
        ]
        out[f"{ct2}/bias"] = arr(np.concatenate(biases))

    def norm(ct2: str, openai: str) -> None:
        out[f"{ct2}/gamma"], out[f"{ct2}/beta"] = arr(n[f"{openai}.weight"]), arr(n[f"{openai}.bias"])

    linear("encoder/conv1", "encoder.conv1")
    linear("encoder/conv2", "encoder.conv2")
    out["encoder/position_encodings/encodings"] = arr(n["encoder.positional_embedding"])
    norm("encoder/layer_norm", "encoder.ln_post")
    out["encoder/num_heads"] = np.array(dims["n_audio_head"], np.int16)
    for part, layers in (("encoder", dims["n_audio_layer"]), ("decoder", dims["n_text_layer"])):
        for i in range(layers):
            c, o = f"{part}/layer_{i}", f"{part}.blocks.{i}"
            norm(f"{c}/self_attention/layer_norm", f"{o}.attn_ln")
            qkv = [f"{o}.attn.{p}" for p in ("query", "key", "value")]
            linear(f"{c}/self_attention/linear_0", *qkv, zero_bias_for=qkv[1])
            linear(f"{c}/self_attention/linear_1", f"{o}.attn.out")
            if part == "decoder":
                norm(f"{c}/attention/layer_norm", f"{o}.cross_attn_ln")
                linear(f"{c}/attention/linear_0", f"{o}.cross_attn.query")
                kv = [f"{o}.cross_attn.key", f"{o}.cross_attn.value"]
                linear(f"{c}/attention/linear_1", *kv, zero_bias_for=kv[0])
                linear(f"{c}/attention/linear_2", f"{o}.cross_attn.out")
            norm(f"{c}/ffn/layer_norm", f"{o}.mlp_ln")
            linear(f"{c}/ffn/linear_0", f"{o}.mlp.0")
            linear(f"{c}/ffn/linear_1", f"{o}.mlp.2")
    out["decoder/embeddings/weight"] = arr(n["decoder.token_embedding.weight"])
    out["decoder/position_encodings/encodings"] = arr(n["decoder.positional_embedding"])
    norm("decoder/layer_norm", "decoder.ln")
    out["decoder/num_heads"] = np.array(dims["n_text_head"], np.int16)
    out["decoder/activation"] = np.array(3, np.int8)  # GELU
    for flag, value in (("pre_norm", 1), ("scale_embeddings", 0), ("alibi", 0), ("start_from_zero_embedding", 0)):
        out[f"decoder/{flag}"] = np.array(value, np.int8)
    out["decoder/alignment_heads"] = np.array(1, np.int16)
    out["decoder/alignment_layer"] = np.array(-1, np.int16)
    return out


def ct2_bytes(
    variables: Dict[str, np.ndarray], aliases: Dict[str, str], spec: str = "WhisperSpec", version: int = 6
) -> bytes:
    """A CTranslate2 model.bin, by hand: u32 version, str spec, u32 revision, variables (sorted), aliases.

    str = u16 byte length including NUL, the UTF-8 bytes, NUL. A variable: str name, u8 rank,
    u32 per dim, u8 dtype id, u32 byte count, the row-major bytes.
    """

    def string(s: str) -> bytes:
        raw = s.encode("utf-8") + b"\0"
        return struct.pack("<H", len(raw)) + raw

    parts = [struct.pack("<I", version), string(spec), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name in sorted(variables):
        value = np.array(variables[name], order="C")  # (ascontiguousarray would make scalars 1-d)
        parts += [string(name), struct.pack("<B", value.ndim), *(struct.pack("<I", d) for d in value.shape)]
        data = value.astype(value.dtype.newbyteorder("<")).tobytes()
        parts += [struct.pack("<B", CT2_DTYPE_IDS[value.dtype.name]), struct.pack("<I", len(data)), data]
    parts.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        parts += [string(alias), string(target)]
    return b"".join(parts)


TIED = {"decoder/projection/weight": "decoder/embeddings/weight"}


def save_ct2(path: Path, variables: Dict[str, np.ndarray], aliases: Optional[Dict[str, str]] = None) -> Path:
    """Write ``path/model.bin`` (path a directory, made here); returns the directory."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.bin").write_bytes(ct2_bytes(variables, TIED if aliases is None else aliases))
    return path


HF_RENAMES = (
    # (openai-whisper name part, transformers name part), applied in order, as the published conversion does
    (".blocks.", ".layers."), (".attn_ln.", ".self_attn_layer_norm."), (".cross_attn_ln.", ".encoder_attn_layer_norm."),
    (".mlp_ln.", ".final_layer_norm."), (".mlp.0.", ".fc1."), (".mlp.2.", ".fc2."),
    (".cross_attn.", ".encoder_attn."), (".attn.", ".self_attn."),
    (".query.", ".q_proj."), (".key.", ".k_proj."), (".value.", ".v_proj."), (".out.", ".out_proj."),
    ("encoder.ln_post.", "encoder.layer_norm."), ("decoder.ln.", "decoder.layer_norm."),
    ("decoder.token_embedding.", "decoder.embed_tokens."),
)  # fmt: skip


def hf_state(state: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """An openai-whisper state dict renamed to transformers' WhisperForConditionalGeneration keys."""
    out = {}
    for key, value in state.items():
        if key.endswith("positional_embedding"):
            new = key.replace("positional_embedding", "embed_positions.weight")
        else:
            new = key
            for old, repl in HF_RENAMES:
                new = new.replace(old, repl)
        out["model." + new] = value
    out["proj_out.weight"] = state["decoder.token_embedding.weight"]
    return out


def hf_config(dims: Dict[str, int]) -> Dict[str, object]:
    """The transformers WhisperConfig fields that describe a model with these dims."""
    d = dims["n_text_state"]
    return {
        "model_type": "whisper", "num_mel_bins": dims["n_mels"], "max_source_positions": dims["n_audio_ctx"],
        "d_model": d, "encoder_attention_heads": dims["n_audio_head"], "encoder_layers": dims["n_audio_layer"],
        "vocab_size": dims["n_vocab"], "max_target_positions": dims["n_text_ctx"],
        "decoder_attention_heads": dims["n_text_head"], "decoder_layers": dims["n_text_layer"],
        "encoder_ffn_dim": 4 * d, "decoder_ffn_dim": 4 * d, "activation_function": "gelu", "scale_embedding": False,
    }  # fmt: skip
