"""GPU training throughput of the LibriSpeech-size Echo encoder-decoder beside a torch-only reference.

    PYTHONPATH=. python bench/gpu_train_throughput.py --device cuda --out gpu.json   # est. ~1 min, H100/H200
    PYTHONPATH=. python bench/gpu_train_throughput.py --device cpu --steps 2 --tiny  # smoke run, seconds

Self-contained for a lent GPU machine that has torch but no ESPnet and no network: it
imports torch, the standard library and ``echo_plugin``'s pure-torch parts
(``echo_plugin.nn``, plus ``echo_plugin.catalog`` / ``registry`` that build them), never
ESPnet (``test/bench/test_gpu_train_throughput.py`` runs it with ``espnet``/``espnet2``
imports made to fail). ``EchoEncoder`` and ``EchoDecoder`` (``echo_plugin/asr/``) subclass
ESPnet's abstract classes and use its padding masks, subsampling and positional encoding,
so this script assembles the same stack from ``echo_plugin.nn`` layers instead, with the
same module names (an ``EchoEncoder`` / ``EchoDecoder`` state dict loads into it; the test
checks that outputs then agree):

* encoder: ESPnet's ``conv2d`` input layer (two 3x3 stride-2 Conv2d + ReLU, Linear, then the
  absolute sinusoidal positions of ``abs_pos: true``), written here in plain torch
  (:class:`Conv2dSubsampling`); ``num_blocks`` pre-norm :class:`~echo_plugin.nn.layers.EncoderLayer`
  with ``standard`` attention (fused SDPA, hard masking) and the ``standard`` rotary
  (theta 10000), swish feed-forward; final LayerNorm;
* decoder: token embedding, ``num_blocks`` :class:`~echo_plugin.nn.layers.DecoderLayer`
  (causal rotary self-attention, cross-attention to the encoder output, feed-forward),
  LayerNorm, output Linear;
* the recipe's hybrid loss: ``ctc_weight`` x CTC (Linear head, sum over the batch / B, as
  ESPnet's ``CTC``) + (1 - ``ctc_weight``) x label-smoothed cross-entropy of the decoder
  (``lsm_weight``; sum / B, ESPnet's ``length_normalized_loss: false``; cross-entropy with
  label smoothing differs from ESPnet's KL form by a constant, same gradient).

Widths are those of ``egs/librispeech_100/asr1/conf/tuning/train_asr_echo.yaml`` (the
recipe's default ``asr_config``) with its ``--nbpe 5000`` vocabulary: D 256, 4 heads, FFN
2048, 18 encoder and 6 decoder blocks, dropout 0.1 (38,832,912 parameters, as the config's
header says; the test checks the widths against the YAML and the count against ESPnet's
built ``EchoEncoder`` / ``EchoDecoder``). ``--tiny`` shrinks everything for a CPU smoke run.

The reference has equal width and the same parameter count, from torch alone: the same
conv2d front end and CTC head, ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer``
(``batch_first``, ``norm_first``, swish, which attend through SDPA), absolute sinusoidal
positions on the decoder's embedding (ESPnet's transformer decoder) instead of rotary.

Batches: LibriSpeech-length utterances, ``--min_seconds``..``--max_seconds`` (default 10-16 s)
drawn uniformly, sorted and cut into ``--batches`` batches of ``--batch_size`` (ESPnet's
length-sorted batching: about 5 % padding at the defaults; default 77 = about 1000 s of audio,
the config's ``batch_bins`` of 16 kHz samples); 80-dim features at a 10 ms hop, standard normal (the
encoder sees features after ESPnet's global mean-variance normalisation); ``--tokens_per_second``
(3.5, about 5000-BPE LibriSpeech) random tokens each. The front end (STFT, mel), SpecAug and
data loading are not in the timed step. One step = bf16 autocast forward (``--amp none``:
float32), backward, gradient clipping at 5 (ESPnet's ``grad_clip``), Adam. The batches live on
the device and are cycled.

Reported per model (JSON to ``--out``, a table on stdout): parameters; utterances/s and
audio hours per GPU hour over the timed steps (wall clock, synchronised); median step time
(CUDA events); peak memory (``torch.cuda.max_memory_allocated`` from model build through the
last step: weights, Adam states, activations); the losses of every step (warm-up included);
and an MFU estimate:

* model FLOPs per step, counted analytically on each utterance's real length (padding is
  waste, not model work): 2 x multiply-adds of every matmul and convolution in the forward
  (each parameter matrix times the tokens it is applied to: conv kernels per output
  position, encoder and CTC weights per subsampled frame, decoder weights per target
  token, cross-attention K/V weights per encoder frame), plus attention's QK^T and AV,
  4 x T x S x D per layer (causal counted in full); training = 3 x forward (backward = 2 x
  forward), i.e. 6 x params x tokens plus 3 x the attention FLOPs, less the first conv's
  input gradient, which is never computed. Biases, norms, activations, rotary, embedding
  look-ups and losses are not counted. ``torch.utils.flop_counter`` agrees exactly on a
  training step (the test checks it); ``padded_flops_per_step`` is the same on the padded shapes;
* MFU = model FLOPs per step x steps / timed seconds / peak, with the assumed dense bf16
  peak per device name in :data:`PEAK_BF16_TFLOPS` (H100 SXM and H200: 989.4 TFLOP/s) or
  ``--peak_tflops``; null when neither applies (e.g. on CPU).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: import echo_plugin from this tree (no install needed)
    sys.path.insert(0, str(ROOT))

from echo_plugin.catalog import ATTENTION  # noqa: E402
from echo_plugin.nn.layers import DecoderInputs, DecoderLayer, EncoderLayer, FeedForward, make_norm  # noqa: E402

CONFIG = "egs/librispeech_100/asr1/conf/tuning/train_asr_echo.yaml"
SAMPLE_RATE = 16000
HOP = 160  # 10 ms frames (the config's frontend_conf hop_length)
PEAK_BF16_TFLOPS: Tuple[Tuple[str, float], ...] = (
    # (substring of torch.cuda.get_device_name(), dense bf16 tensor-core TFLOP/s), first match wins
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),  # SXM ("NVIDIA H100 80GB HBM3")
    ("H200", 989.4),  # same compute as the H100 SXM, more memory (GH200 included)
    ("A100", 312.0),
)
REPORT_FIELDS = (
    "params",
    "encoder_params",
    "decoder_params",
    "ctc_params",
    "steps_timed",
    "seconds_timed",
    "step_seconds_median",
    "utterances_per_second",
    "audio_hours_per_gpu_hour",
    "peak_memory_bytes",
    "peak_memory_gib",
    "model_flops_per_step",
    "padded_flops_per_step",
    "achieved_tflops",
    "mfu",
    "losses",
)


@dataclass(frozen=True)
class Widths:
    """The model's sizes (encoder and decoder share heads and FFN width, as the config)."""

    output_size: int
    attention_heads: int
    linear_units: int
    encoder_blocks: int
    decoder_blocks: int
    vocab: int
    input_size: int = 80
    dropout: float = 0.1
    ctc_weight: float = 0.3
    lsm_weight: float = 0.1
    rotary_theta: float = 10000.0


LIBRISPEECH = Widths(output_size=256, attention_heads=4, linear_units=2048, encoder_blocks=18, decoder_blocks=6,
                     vocab=5000)  # fmt: skip  # CONFIG, with run.sh's --nbpe 5000
TINY = Widths(output_size=32, attention_heads=2, linear_units=64, encoder_blocks=2, decoder_blocks=1, vocab=40)


# ------------------------------------------------------------------ shared pieces, plain torch


class SinusoidalPositions(nn.Module):
    """ESPnet's ``PositionalEncoding``: ``dropout(x * sqrt(D) + pe[:T])``, no parameters."""

    def __init__(self, d_model: int, dropout: float, max_len: int = 5000) -> None:
        super().__init__()
        self.xscale = math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("pe", self._table(d_model, max_len), persistent=False)

    @staticmethod
    def _table(d_model: int, length: int) -> Tensor:
        position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model))
        pe = torch.zeros(length, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        return pe

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, D) -> (B, T, D)."""
        if x.size(1) > self.pe.size(0):
            self.pe = self._table(x.size(-1), x.size(1)).to(self.pe.device)
        return self.dropout(x * self.xscale + self.pe[: x.size(1)].to(x.dtype))


class Conv2dSubsampling(nn.Module):
    """ESPnet's ``conv2d`` input layer (time / 4) with its module names: (B, T, F) -> (B, T', D)."""

    def __init__(self, idim: int, odim: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, odim, 3, 2), nn.ReLU(), nn.Conv2d(odim, odim, 3, 2), nn.ReLU())
        freq = ((idim - 1) // 2 - 1) // 2
        self.out = nn.Sequential(nn.Linear(odim * freq, odim), SinusoidalPositions(odim, dropout))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x.unsqueeze(1))  # (B, D, T', F')
        b, c, t, f = x.shape
        return self.out(x.transpose(1, 2).reshape(b, t, c * f))


def subsampled(lengths: Tensor | int) -> Tensor | int:
    """Frames after the two unpadded 3x3 stride-2 convs (EchoEncoder's ``subsampled_lengths``)."""
    for _ in range(2):
        lengths = (lengths - 3) // 2 + 1
    return lengths


def real_mask(lengths: Tensor, frames: int) -> Tensor:
    """(B,) lengths -> (B, frames) bool, True = real frame/token."""
    return torch.arange(frames, device=lengths.device) < lengths.unsqueeze(-1)


# ------------------------------------------------------------------ Echo, from echo_plugin.nn


def echo_attention(w: Widths, rotary: bool) -> nn.Module:
    """A ``standard`` ATTENTION module, as EchoEncoder / EchoDecoder build it from their layer spec."""
    spec = {"type": "standard", "conf": {"theta": w.rotary_theta}} if rotary else "none"
    return ATTENTION.build(
        "standard", d_model=w.output_size, n_heads=w.attention_heads, dropout=w.dropout, rotary=spec, masking="hard"
    )


class EchoEncoderStack(nn.Module):
    """``EchoEncoder(input_layer=conv2d, abs_pos=True)`` with every layer ``standard`` attention,
    ``standard`` rotary, ``hard`` masking, no gate; (B, T, F), (B,) -> (B, T', D), (B,)."""

    def __init__(self, w: Widths) -> None:
        super().__init__()
        d = w.output_size
        self.embed = Conv2dSubsampling(w.input_size, d, w.dropout)
        self.blocks = nn.ModuleList(
            EncoderLayer(echo_attention(w, True), FeedForward(d, w.linear_units, w.dropout, "swish"), d, w.dropout)
            for _ in range(w.encoder_blocks)
        )
        self.after_norm = make_norm("layer_norm", d)

    def forward(self, feats: Tensor, feat_lens: Tensor) -> Tuple[Tensor, Tensor]:
        xs = self.embed(feats)
        olens = subsampled(feat_lens)
        keep = real_mask(olens, xs.size(1))
        positions = torch.arange(xs.size(1), device=xs.device)
        for block in self.blocks:
            xs = block(xs, keep, positions)
        return self.after_norm(xs), olens


class EchoDecoderStack(nn.Module):
    """``EchoDecoder`` with its default layers (rotary self-attention, plain cross-attention, no
    gate): (B, S, D) memory, (B,), (B, L) input tokens, (B,) -> logits (B, L, V)."""

    def __init__(self, w: Widths) -> None:
        super().__init__()
        d = w.output_size
        self.embed = nn.Embedding(w.vocab, d)
        nn.init.normal_(self.embed.weight, std=d**-0.5)
        self.embed_dropout = nn.Dropout(w.dropout)
        self.blocks = nn.ModuleList(
            DecoderLayer(
                echo_attention(w, True),
                echo_attention(w, False),
                FeedForward(d, w.linear_units, w.dropout, "swish"),
                d,
                w.dropout,
            )
            for _ in range(w.decoder_blocks)
        )
        self.after_norm = make_norm("layer_norm", d)
        self.output_layer = nn.Linear(d, w.vocab)

    def forward(self, memory: Tensor, memory_lens: Tensor, ys_in: Tensor, ys_in_lens: Tensor) -> Tensor:
        inputs = DecoderInputs(
            memory,
            real_mask(memory_lens, memory.size(1)),
            real_mask(ys_in_lens, ys_in.size(1)),
            torch.arange(ys_in.size(1), device=ys_in.device),
        )
        x = self.embed_dropout(self.embed(ys_in))
        for block in self.blocks:
            x, _, _ = block(x, inputs)
        return self.output_layer(self.after_norm(x))


# ------------------------------------------------------------------ the reference, torch alone


class TorchEncoderStack(nn.Module):
    """The same front end, then ``nn.TransformerEncoderLayer`` (pre-norm, swish) x N, LayerNorm."""

    def __init__(self, w: Widths) -> None:
        super().__init__()
        d = w.output_size
        self.embed = Conv2dSubsampling(w.input_size, d, w.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d, w.attention_heads, w.linear_units, w.dropout, activation=F.silu, batch_first=True, norm_first=True
            )
            for _ in range(w.encoder_blocks)
        )
        self.after_norm = nn.LayerNorm(d)

    def forward(self, feats: Tensor, feat_lens: Tensor) -> Tuple[Tensor, Tensor]:
        xs = self.embed(feats)
        olens = subsampled(feat_lens)
        padding = ~real_mask(olens, xs.size(1))
        for block in self.blocks:
            xs = block(xs, src_key_padding_mask=padding)
        return self.after_norm(xs), olens


class TorchDecoderStack(nn.Module):
    """Embedding + sinusoidal positions, ``nn.TransformerDecoderLayer`` (pre-norm, swish) x N, LayerNorm, Linear."""

    def __init__(self, w: Widths) -> None:
        super().__init__()
        d = w.output_size
        self.embed = nn.Embedding(w.vocab, d)
        self.positions = SinusoidalPositions(d, w.dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerDecoderLayer(
                d, w.attention_heads, w.linear_units, w.dropout, activation=F.silu, batch_first=True, norm_first=True
            )
            for _ in range(w.decoder_blocks)
        )
        self.after_norm = nn.LayerNorm(d)
        self.output_layer = nn.Linear(d, w.vocab)

    def forward(self, memory: Tensor, memory_lens: Tensor, ys_in: Tensor, ys_in_lens: Tensor) -> Tensor:
        length = ys_in.size(1)
        causal = torch.ones(length, length, dtype=torch.bool, device=ys_in.device).triu(1)  # True = hidden
        target_padding = ~real_mask(ys_in_lens, length)
        memory_padding = ~real_mask(memory_lens, memory.size(1))
        x = self.positions(self.embed(ys_in))
        for block in self.blocks:
            x = block(
                x,
                memory,
                tgt_mask=causal,
                tgt_key_padding_mask=target_padding,
                memory_key_padding_mask=memory_padding,
                tgt_is_causal=True,
            )
        return self.output_layer(self.after_norm(x))


# ------------------------------------------------------------------ the hybrid CTC/attention model


@dataclass
class Batch:
    """One padded batch. Tokens: 0 = blank, 1..V-2 = labels, V-1 = <sos/eos>; -1 = ignored."""

    feats: Tensor  # (B, T, F) float32
    feat_lens: Tensor  # (B,)
    seconds: List[float]  # per utterance
    ys: Tensor  # (B, S) labels, padding 0 (CTC targets)
    ys_lens: Tensor  # (B,)
    ys_in: Tensor  # (B, S + 1) <sos> + labels, padding <eos>
    ys_out: Tensor  # (B, S + 1) labels + <eos>, padding -1

    @property
    def size(self) -> int:
        return len(self.seconds)

    def to(self, device: torch.device) -> Batch:
        moved = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in self.__dict__.items()}
        return Batch(**moved)


class HybridASR(nn.Module):
    """encoder -> CTC head and decoder; loss = w CTC + (1 - w) label-smoothed CE, each summed / B."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, w: Widths) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.ctc_lo = nn.Linear(w.output_size, w.vocab)
        self.ctc_weight = w.ctc_weight
        self.lsm_weight = w.lsm_weight

    def forward(self, batch: Batch) -> Tensor:
        hs, hlens = self.encoder(batch.feats, batch.feat_lens)
        log_probs = F.log_softmax(self.ctc_lo(hs).float(), dim=-1).transpose(0, 1)  # (T', B, V)
        ctc = F.ctc_loss(log_probs, batch.ys, hlens, batch.ys_lens, blank=0, reduction="sum", zero_infinity=True)
        logits = self.decoder(hs, hlens, batch.ys_in, batch.ys_lens + 1)
        att = F.cross_entropy(
            logits.float().flatten(0, 1),
            batch.ys_out.flatten(),
            ignore_index=-1,
            label_smoothing=self.lsm_weight,
            reduction="sum",
        )
        return (self.ctc_weight * ctc + (1 - self.ctc_weight) * att) / batch.size


def build_model(kind: str, w: Widths) -> HybridASR:
    """``echo`` (echo_plugin.nn layers) or ``torch_reference`` (torch.nn transformer layers)."""
    if kind == "echo":
        return HybridASR(EchoEncoderStack(w), EchoDecoderStack(w), w)
    if kind == "torch_reference":
        return HybridASR(TorchEncoderStack(w), TorchDecoderStack(w), w)
    raise ValueError(f"unknown model {kind!r}")


MODELS = ("echo", "torch_reference")


# ------------------------------------------------------------------ data


def make_batches(
    w: Widths,
    n_batches: int,
    batch_size: int,
    min_seconds: float,
    max_seconds: float,
    tokens_per_second: float,
    seed: int = 0,
) -> List[Batch]:
    """``n_batches`` x ``batch_size`` utterances of uniform random length, sorted by length and
    cut into batches (little padding, as ESPnet's sorted batching); CPU tensors."""
    gen = torch.Generator().manual_seed(seed)
    count = n_batches * batch_size
    seconds = (min_seconds + (max_seconds - min_seconds) * torch.rand(count, generator=gen)).sort().values.tolist()
    batches = []
    for start in range(0, count, batch_size):
        secs = seconds[start : start + batch_size]
        frames = torch.tensor([1 + int(s * SAMPLE_RATE) // HOP for s in secs])
        tokens = torch.tensor([max(1, round(s * tokens_per_second)) for s in secs])
        size, length = len(secs), int(tokens.max())
        feats = torch.randn(size, int(frames.max()), w.input_size, generator=gen)
        feats = feats * real_mask(frames, feats.size(1)).unsqueeze(-1)
        labels = torch.randint(1, w.vocab - 1, (size, length), generator=gen)
        valid = real_mask(tokens, length)
        eos = w.vocab - 1
        ys = labels.masked_fill(~valid, 0)
        ys_in = torch.cat([torch.full((size, 1), eos), labels.masked_fill(~valid, eos)], dim=1)
        ys_out = torch.cat([labels.masked_fill(~valid, -1), torch.full((size, 1), -1)], dim=1)
        ys_out[torch.arange(size), tokens] = eos
        batches.append(Batch(feats, frames, secs, ys, tokens, ys_in, ys_out))
    return batches


# ------------------------------------------------------------------ FLOPs


def forward_flops(w: Widths, frames: int, tokens: int, enc_frames: Optional[int] = None) -> int:
    """Matmul + convolution FLOPs (2 x multiply-adds, biases left out) of one utterance's forward.

    ``frames``: input feature frames; ``tokens``: decoder input length (labels + 1);
    ``enc_frames``: keys the decoder's cross-attention sees (default: this utterance's own
    subsampled frames; the padded length for a padded count).
    """
    d, ff, v = w.output_size, w.linear_units, w.vocab
    t1, f1 = (frames - 3) // 2 + 1, (w.input_size - 3) // 2 + 1
    t2, f2 = (t1 - 3) // 2 + 1, (f1 - 3) // 2 + 1
    s = t2 if enc_frames is None else enc_frames
    front = 2 * 9 * d * t1 * f1 + 2 * 9 * d * d * t2 * f2 + 2 * (d * f2) * d * t2
    enc_layer = 2 * (4 * d * d + 2 * d * ff) * t2 + 4 * t2 * t2 * d
    ctc = 2 * d * v * t2
    dec_layer = (
        2 * (4 * d * d + 2 * d * d + 2 * d * ff) * tokens  # self q,k,v,out; cross q,out; FFN
        + 2 * 2 * d * d * t2  # cross k, v over the encoder frames
        + 4 * tokens * tokens * d  # self-attention QK^T, AV
        + 4 * tokens * s * d  # cross-attention
    )
    output = 2 * d * v * tokens
    return front + w.encoder_blocks * enc_layer + ctc + w.decoder_blocks * dec_layer + output


def train_flops(w: Widths, frames: int, tokens: int) -> int:
    """One utterance's training FLOPs: 3 x forward (backward: gradients of inputs and weights, 2 x
    forward), less the first convolution's input gradient (the features need none)."""
    t1, f1 = (frames - 3) // 2 + 1, (w.input_size - 3) // 2 + 1
    return 3 * forward_flops(w, frames, tokens) - 2 * 9 * w.output_size * t1 * f1


def step_flops(w: Widths, batch: Batch, padded: bool = False) -> int:
    """Training FLOPs of one step on ``batch`` (:func:`train_flops`), on real lengths or the padded shapes."""
    frames, tokens = batch.feat_lens.tolist(), (batch.ys_lens + 1).tolist()
    if padded:
        frames, tokens = [batch.feats.size(1)] * batch.size, [batch.ys_in.size(1)] * batch.size
    return sum(train_flops(w, f, n) for f, n in zip(frames, tokens))


def peak_tflops(device: torch.device, override: Optional[float]) -> Tuple[Optional[float], str]:
    """(assumed dense bf16 peak TFLOP/s or None, where it came from)."""
    if override is not None:
        return override, "--peak_tflops"
    if device.type != "cuda":
        return None, f"no peak assumed for {device.type} (give --peak_tflops)"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS:
        if key in name:
            return value, f"table: '{key}' in '{name}', dense bf16"
    return None, f"'{name}' not in the table (give --peak_tflops)"


# ------------------------------------------------------------------ timing


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model: HybridASR, optimizer: torch.optim.Optimizer, batch: Batch, amp: bool) -> Tensor:
    """Forward (bf16 autocast when ``amp``), backward, clip at 5, Adam; returns the loss (not synced)."""
    with torch.autocast(batch.feats.device.type, dtype=torch.bfloat16, enabled=amp):
        loss = model(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()
    return loss.detach()


def measure(
    kind: str,
    w: Widths,
    batches: Sequence[Batch],
    device: torch.device,
    steps: int,
    warmup: int,
    amp: bool,
    lr: float,
    time_limit: float,
    peak: Optional[float],
) -> Dict[str, object]:
    """Build ``kind`` on ``device``, train ``warmup`` then up to ``steps`` timed steps (stopping
    early after ``time_limit`` seconds of timed steps); the report's per-model fields."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    model = build_model(kind, w).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-6)
    losses = [train_step(model, optimizer, batches[i % len(batches)], amp) for i in range(warmup)]
    cuda = device.type == "cuda"
    marks: List[Tuple[object, object]] = []
    audio_seconds, utterances, flops, padded_flops = 0.0, 0, 0, 0
    synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        batch = batches[(warmup + i) % len(batches)]
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
        else:
            begin = time.perf_counter()
        losses.append(train_step(model, optimizer, batch, amp))
        if cuda:
            end.record()
        else:
            end = time.perf_counter()
        marks.append((begin, end))
        audio_seconds += sum(batch.seconds)
        utterances += batch.size
        flops += step_flops(w, batch)
        padded_flops += step_flops(w, batch, padded=True)
        if time.perf_counter() - start > time_limit:
            break
    synchronize(device)
    seconds = time.perf_counter() - start
    timed = len(marks)
    step_times = [b.elapsed_time(e) / 1000 if cuda else e - b for b, e in marks]  # type: ignore[union-attr]
    achieved = flops / seconds / 1e12
    peak_bytes = torch.cuda.max_memory_allocated(device) if cuda else None
    report = {
        "params": count_params(model),
        "encoder_params": count_params(model.encoder),
        "decoder_params": count_params(model.decoder),
        "ctc_params": count_params(model.ctc_lo),
        "steps_timed": timed,
        "seconds_timed": seconds,
        "step_seconds_median": statistics.median(step_times),
        "utterances_per_second": utterances / seconds,
        "audio_hours_per_gpu_hour": audio_seconds / seconds,
        "peak_memory_bytes": peak_bytes,
        "peak_memory_gib": None if peak_bytes is None else peak_bytes / 2**30,
        "model_flops_per_step": flops / timed,
        "padded_flops_per_step": padded_flops / timed,
        "achieved_tflops": achieved,
        "mfu": None if peak is None else achieved / peak,
        "losses": [float(x) for x in torch.stack(losses).cpu()],
    }
    del model, optimizer
    return report


# ------------------------------------------------------------------ main


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny widths and batches (CPU smoke run)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model (default 60; tiny 4)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10; tiny 1)")
    parser.add_argument("--batch_size", type=int, default=None, help="utterances per batch (default 77; tiny 2)")
    parser.add_argument("--batches", type=int, default=4, help="distinct batches, cycled (1 = one fixed batch)")
    parser.add_argument("--min_seconds", type=float, default=None, help="shortest utterance (default 10; tiny 1)")
    parser.add_argument("--max_seconds", type=float, default=None, help="longest utterance (default 16; tiny 1.6)")
    parser.add_argument("--tokens_per_second", type=float, default=3.5)
    parser.add_argument("--amp", choices=("bf16", "none"), default="bf16")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (constant)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {MODELS}")
    parser.add_argument("--time_limit", type=float, default=60.0, help="stop a model's timed steps after this (s)")
    parser.add_argument("--peak_tflops", type=float, default=None, help="override the assumed bf16 peak")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = parser.parse_args(argv)
    defaults = (4, 1, 2, 1.0, 1.6) if args.tiny else (60, 10, 77, 10.0, 16.0)
    for name, value in zip(("steps", "warmup", "batch_size", "min_seconds", "max_seconds"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def run(args: argparse.Namespace) -> Dict[str, object]:
    """The whole report (see the module doc)."""
    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    w = TINY if args.tiny else LIBRISPEECH
    models = [m for m in args.models.split(",") if m]
    for kind in models:
        if kind not in MODELS:
            raise SystemExit(f"--models: unknown {kind!r}, choose from {MODELS}")
    batches = make_batches(
        w, args.batches, args.batch_size, args.min_seconds, args.max_seconds, args.tokens_per_second, args.seed
    )
    real_frames = sum(int(b.feat_lens.sum()) for b in batches)
    padding = 1 - real_frames / sum(b.feats.shape[0] * b.feats.shape[1] for b in batches)
    batches = [b.to(device) for b in batches]
    peak, peak_source = peak_tflops(device, args.peak_tflops)
    report: Dict[str, object] = {
        "script": "bench/gpu_train_throughput.py",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "config": "tiny (--tiny)" if args.tiny else f"{CONFIG}, vocabulary 5000",
        "widths": asdict(w),
        "amp": args.amp,
        "peak_bf16_tflops_assumed": peak,
        "peak_source": peak_source,
        "flops_convention": "analytic: 2 x MACs of matmuls and convs (no biases) + attention QK^T/AV (causal in "
        "full), on real lengths; training = 3 x forward less the first conv's input gradient",
        "batch": {
            "batches": len(batches),
            "utterances_per_batch": args.batch_size,
            "min_seconds": args.min_seconds,
            "max_seconds": args.max_seconds,
            "mean_audio_seconds_per_batch": statistics.mean(sum(b.seconds) for b in batches),
            "tokens_per_second": args.tokens_per_second,
            "feature_dim": w.input_size,
            "padding_fraction": padding,
        },
        "steps": args.steps,
        "warmup": args.warmup,
        "lr": args.lr,
        "models": {},
    }
    for kind in models:
        report["models"][kind] = measure(  # type: ignore[index]
            kind, w, batches, device, args.steps, args.warmup, args.amp == "bf16", args.lr, args.time_limit, peak
        )
    if set(MODELS) <= set(report["models"]):  # type: ignore[arg-type]
        echo, ref = report["models"]["echo"], report["models"]["torch_reference"]  # type: ignore[index]
        report["echo_vs_reference"] = {
            "throughput_ratio": echo["utterances_per_second"] / ref["utterances_per_second"],
            "memory_ratio": None
            if echo["peak_memory_bytes"] is None
            else echo["peak_memory_bytes"] / ref["peak_memory_bytes"],
        }
    return report


def print_report(report: Dict[str, object], write: Callable[[str], object] = print) -> None:
    """A table of the per-model numbers."""
    batch = report["batch"]
    write(
        f"{report['device_name']} ({report['device']}), torch {report['torch']}, amp {report['amp']}, "
        f"{report['config']}; peak assumed: {report['peak_bf16_tflops_assumed']} TFLOP/s ({report['peak_source']})"
    )
    write(
        f"batch: {batch['utterances_per_batch']} x {batch['min_seconds']}-{batch['max_seconds']} s "  # type: ignore[index]
        f"({batch['mean_audio_seconds_per_batch']:.0f} s of audio, padding {batch['padding_fraction']:.1%}), "  # type: ignore[index]
        f"{report['warmup']} warm-up + {report['steps']} timed steps"
    )
    write(
        "model            params(M)  utt/s   audio h/GPU h  step s (median)  peak GiB  TFLOP/s  MFU    "
        "loss first->last"
    )
    for kind, m in report["models"].items():  # type: ignore[union-attr]
        gib = "-" if m["peak_memory_gib"] is None else f"{m['peak_memory_gib']:.2f}"
        mfu = "-" if m["mfu"] is None else f"{m['mfu']:.1%}"
        write(
            f"{kind:<16} {m['params'] / 1e6:9.2f}  {m['utterances_per_second']:6.2f}  "
            f"{m['audio_hours_per_gpu_hour']:13.1f}  {m['step_seconds_median']:15.4f}  {gib:>8}  "
            f"{m['achieved_tflops']:7.3f}  {mfu:>5}  {m['losses'][0]:.3f}->{m['losses'][-1]:.3f}"
        )
    if "echo_vs_reference" in report:
        write(f"echo / reference: {report['echo_vs_reference']}")


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    args = parse_args(argv)
    report = run(args)
    print_report(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
