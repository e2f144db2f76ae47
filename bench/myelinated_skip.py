"""Myelinated attention: training-step time as the forced skip rate rises.

    python -m bench.myelinated_skip --out bench/REPORT_myelinated_skip.md     # CPU, ~2 minutes
    python -m bench.myelinated_skip --device cuda --frames 4000

One Echo ``EncoderLayer`` (d_model 256, 4 heads, FFN 1024, batch 4, the shape of
``bench.attention_layer``) with ``myelinated`` attention whose policy is replaced
by ``forced_skip_rate`` r in 0, 0.25, 0.5, 0.75, 1.0 (a share r of the segments
skipped, the rest on the full path; see the module's doc), plus the ``standard``
layer for reference. Time: median wall-clock seconds of one forward +
``backward(fixed random gradient)``, for the whole layer and for the attention
module alone, cases interleaved round-robin. The table also gives the query rows
that reached the attention kernel (counted by wrapping it), the measured skip
share, and each time relative to r = 0.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from bench.attention_layer import Shape, device_description

RATES = (0.0, 0.25, 0.5, 0.75, 1.0)


def build_layer(shape: Shape, attention: str, conf: Dict[str, object]) -> nn.Module:
    """An Echo EncoderLayer with the named attention (rotary standard)."""
    from echo_plugin.catalog import ATTENTION
    from echo_plugin.nn.layers import EncoderLayer, FeedForward

    spec = {"type": attention, "conf": conf}
    return EncoderLayer(
        ATTENTION.build(spec, d_model=shape.d_model, n_heads=shape.heads, dropout=0.0, rotary="standard"),
        FeedForward(shape.d_model, shape.ffn, shape.dropout),
        shape.d_model,
        shape.dropout,
    )


def steps(layer: nn.Module, frames: int, device: torch.device) -> Tuple[Callable, Callable]:
    """(whole-layer step, attention-only step): each ``fn(x, keep, grad)`` runs forward + backward."""
    from echo_plugin.nn.attention.memory import WorkingMemory

    positions = torch.arange(frames, device=device)

    def layer_step(x: Tensor, keep: Tensor, grad: Tensor) -> None:
        layer(x, keep, positions, memory=WorkingMemory()).backward(grad)
        layer.zero_grad(set_to_none=True)

    def attention_step(x: Tensor, keep: Tensor, grad: Tensor) -> None:
        extra = {"memory": WorkingMemory()} if getattr(layer.self_attn, "uses_memory", False) else {}
        out, _ = layer.self_attn(x, key_padding_mask=keep, q_positions=positions, k_positions=positions, **extra)
        out.backward(grad)
        layer.zero_grad(set_to_none=True)

    return layer_step, attention_step


def kernel_rows(layer: nn.Module, x: Tensor, keep: Tensor) -> Optional[int]:
    """Query rows (batch x gathered frames) the myelinated full path sends to the kernel in one
    forward; None for other modules."""
    attention = layer.self_attn
    full_rows = getattr(attention, "_full_rows", None)
    if full_rows is None:
        return None
    rows: List[int] = []

    def counting(*args, **kwargs):
        out = full_rows(*args, **kwargs)
        rows.append(out[1].numel())  # the gathered frame index (B, L)
        return out

    attention._full_rows = counting
    try:
        with torch.no_grad():
            attention(x, key_padding_mask=keep)
    finally:
        del attention._full_rows
    return sum(rows)


def main(argv: Optional[Sequence[str]] = None) -> str:
    raw = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.myelinated_skip", description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="write the Markdown table here (default: print it)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=1000, help="sequence length T")
    parser.add_argument("--batch", type=int, default=Shape.batch)
    parser.add_argument("--segment", type=int, default=8, help="myelinated segment length (frames)")
    parser.add_argument("--memory-slots", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(raw)
    device = torch.device(args.device)
    shape = Shape(batch=args.batch)
    frames = args.frames

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape.batch, frames, shape.d_model, generator=gen).to(device)
    grad = torch.randn(shape.batch, frames, shape.d_model, generator=gen).to(device)
    keep = torch.ones(shape.batch, frames, dtype=torch.bool, device=device)  # no padding: skip shares are exact

    cases: List[Tuple[str, nn.Module]] = [("standard", build_layer(shape, "standard", {}))]
    for rate in RATES:
        conf = {"forced_skip_rate": rate, "segment": args.segment, "memory_slots": args.memory_slots}
        cases.append((f"myelinated, skip rate {rate:g}", build_layer(shape, "myelinated", conf)))
    times: Dict[str, Dict[str, List[float]]] = {name: {"layer": [], "attention": []} for name, _ in cases}
    rows: Dict[str, Optional[int]] = {}
    shares: Dict[str, Optional[float]] = {}
    runners = []
    for name, layer in cases:
        layer.to(device).train()
        layer_step, attention_step = steps(layer, frames, device)
        rows[name] = kernel_rows(layer, x, keep)
        rates = getattr(layer.self_attn, "last_rates", None)
        shares[name] = None if rates is None else float(rates[2])
        for _ in range(args.warmup):
            layer_step(x.clone().requires_grad_(), keep, grad)
            attention_step(x.clone().requires_grad_(), keep, grad)
        runners.append((name, layer_step, attention_step))
    started = time.perf_counter()
    for _ in range(args.repeats):
        for name, layer_step, attention_step in runners:
            for part, step in (("layer", layer_step), ("attention", attention_step)):
                xin = x.clone().requires_grad_()
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                tic = time.perf_counter()
                step(xin, keep, grad)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                times[name][part].append(time.perf_counter() - tic)
        print(f"repeat done ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)

    median = {name: {part: statistics.median(v) for part, v in parts.items()} for name, parts in times.items()}
    base = median["myelinated, skip rate 0"]
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python -m bench.myelinated_skip" + ("" if not raw else " " + shlex.join(raw))
    lines = [
        "# Myelinated attention: time vs forced skip rate",
        "",
        f"Generated by `{command}` on {now}. Do not edit by hand: rerun the command.",
        "",
        f"- device: {device_description(device)}; torch {torch.__version__} ({torch.get_num_threads()} thread(s), "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), Python {platform.python_version()}",
        f"- shape: batch {shape.batch}, T={frames}, d_model {shape.d_model}, {shape.heads} heads, FFN {shape.ffn}, "
        f"float32, training mode, no padding; segment {args.segment} frames, {args.memory_slots} memory slots",
        f"- time: median of {args.repeats} forward + backward steps (after {args.warmup} warm-up), "
        "cases interleaved; `layer` = whole pre-norm EncoderLayer, `attention` = the attention module alone",
        "- kernel rows: query rows (batch x frames) the full path sent to the attention kernel",
        "",
        "| case | skip share | kernel rows | layer ms | layer vs r=0 | attention ms | attention vs r=0 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, _ in cases:
        share = "-" if shares[name] is None else f"{shares[name]:.2f}"
        row_count = "-" if rows[name] is None else str(rows[name])
        layer_ms, attn_ms = 1e3 * median[name]["layer"], 1e3 * median[name]["attention"]
        lines.append(
            f"| {name} | {share} | {row_count} | {layer_ms:.1f} | {median[name]['layer'] / base['layer']:.2f}x "
            f"| {attn_ms:.1f} | {median[name]['attention'] / base['attention']:.2f}x |"
        )
    report = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(report)
    return report


if __name__ == "__main__":
    main()
