"""Optimizer state memory and step time: MaxFactor against torch AdamW.

    OMP_NUM_THREADS=1 python -m bench.optimizer_memory --out bench/OPTIMIZER.md

Models (float32 parameters):

* ``fsdd``: the FSDD Echo model, built through ESPnet's ``ASRTask`` from
  ``egs/fsdd/asr1/conf/tuning/train_asr_echo.yaml`` with the recipe's vocabulary
  size (13 tokens: 10 digit words, blank, unk, sos/eos);
* ``encoder38m``: an Echo encoder alone at the size of a 38M-parameter model
  (``EchoEncoder(80, output_size=512, attention_heads=8, linear_units=2048,
  num_blocks=10, input_layer=conv2d)``, 38.9M parameters).

Measured: the bytes of every tensor in ``optimizer.state`` after the first step
(what a checkpoint stores and what stays allocated between steps), and the
wall-clock time of ``optimizer.step()`` alone on fixed random gradients (median
of ``--repeats`` steps after one warm-up, the two optimizers interleaved so that
load from other processes hits both alike). Forward and backward are not timed.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
FSDD_CONFIG = REPO / "egs" / "fsdd" / "asr1" / "conf" / "tuning" / "train_asr_echo.yaml"
FSDD_TOKENS = ["<blank>", "<unk>"] + [f"▁{w}" for w in "ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE".split()]
FSDD_TOKENS.append("<sos/eos>")


def fsdd_model() -> nn.Module:
    """The FSDD Echo model as the recipe builds it (ESPnet ASRTask, the shipped YAML)."""
    import echo_plugin

    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens.txt"
        tokens.write_text("\n".join(FSDD_TOKENS) + "\n")
        args = ASRTask.get_parser().parse_args(["--config", str(FSDD_CONFIG), "--token_list", str(tokens)])
        args.normalize = None
        return ASRTask.build_model(args)


def encoder_38m() -> nn.Module:
    """An Echo encoder of 38.9M parameters."""
    from echo_plugin.asr.encoder.echo_encoder import EchoEncoder

    return EchoEncoder(80, output_size=512, attention_heads=8, linear_units=2048, num_blocks=10, input_layer="conv2d")


MODELS: Dict[str, Tuple[str, Callable[[], nn.Module]]] = {
    "fsdd": ("FSDD Echo (train_asr_echo.yaml, via ESPnet)", fsdd_model),
    "encoder38m": ("Echo encoder 512x10, 38.9M", encoder_38m),
}


def optimizers(params: List[nn.Parameter]) -> Dict[str, torch.optim.Optimizer]:
    from echo_plugin.optim.maxfactor import MaxFactor

    return {
        "AdamW": torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01),
        "AdamW foreach": torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, foreach=True),
        "MaxFactor": MaxFactor(params, lr=0.01, weight_decay=0.01),
    }


def state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes of every tensor held in the optimizer's per-parameter state."""
    return sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if torch.is_tensor(t))


def measure(model: nn.Module, repeats: int) -> Dict[str, Dict[str, float]]:
    """{optimizer: {state_bytes, step_ms}} for one model (its parameters are updated in place)."""
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-3
    opts = optimizers(params)
    results: Dict[str, Dict[str, float]] = {}
    for name, opt in opts.items():
        opt.step()  # warm-up; allocates the state
        results[name] = {"state_bytes": float(state_bytes(opt))}
    times: Dict[str, List[float]] = {name: [] for name in opts}
    for _ in range(repeats):
        for name, opt in opts.items():
            start = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - start)
    for name in opts:
        results[name]["step_ms"] = 1e3 * statistics.median(times[name])
    return results


def breakdown(model: nn.Module) -> Tuple[int, int, int, int]:
    """(parameters, of which in tensors with dim >= 2, MaxFactor state numbers = sum(rows+cols) + vector
    sizes, parameter tensors)."""
    total = matrix = state = tensors = 0
    for p in model.parameters():
        tensors += 1
        total += p.numel()
        if p.dim() >= 2:
            matrix += p.numel()
            state += p.numel() // p.shape[-1] + p.numel() // p.shape[-2]
        else:
            state += p.numel()
    return total, matrix, state, tensors


def report(
    rows: Dict[str, Dict[str, Dict[str, float]]], counts: Dict[str, Tuple[int, int, int, int]], repeats: int
) -> str:
    mib = 2.0**20
    lines = [
        "# Optimizer state memory and step time: MaxFactor vs AdamW",
        "",
        f"Regenerate: `OMP_NUM_THREADS=1 python -m bench.optimizer_memory --out bench/OPTIMIZER.md` "
        f"(repeats={repeats}). Written {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on "
        f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, float32 parameters, "
        f"load average {os.getloadavg()[0]:.1f} at the end (a shared machine: times are indicative).",
        "",
        "State = bytes of the tensors in `optimizer.state` after the first step. AdamW keeps two full-size",
        "moments per parameter (plus a step counter tensor); MaxFactor keeps, per tensor with dim >= 2, a row",
        "and a column statistic (rows + cols numbers per matrix, leading dims as batch), and a full second",
        "moment only for vectors and scalars. Step = median wall-clock time of `optimizer.step()` alone on",
        "fixed random gradients, CPU, the optimizers interleaved. `AdamW` is torch's default implementation",
        "on CPU (a per-parameter loop), `AdamW foreach` its multi-tensor one; MaxFactor loops over matrices",
        "and uses multi-tensor kernels for vectors and scalars. Forward/backward are not included.",
        "",
        "| model | params | tensors | in matrices | AdamW state | MaxFactor state | state ratio "
        "| AdamW step | AdamW foreach step | MaxFactor step | step time ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, result in rows.items():
        total, matrix, _, tensors = counts[key]
        adam, maxf = result["AdamW"], result["MaxFactor"]
        lines.append(
            f"| {MODELS[key][0]} | {total / 1e6:.2f}M | {tensors} | {100 * matrix / total:.1f}% "
            f"| {adam['state_bytes'] / mib:.2f} MiB | {maxf['state_bytes'] / mib:.3f} MiB "
            f"| {maxf['state_bytes'] / adam['state_bytes']:.4f} "
            f"| {adam['step_ms']:.1f} ms | {result['AdamW foreach']['step_ms']:.1f} ms "
            f"| {maxf['step_ms']:.1f} ms | {maxf['step_ms'] / adam['step_ms']:.2f} |"
        )
    lines += [
        "",
        "State ratio = MaxFactor / AdamW bytes; step time ratio = MaxFactor / AdamW (default implementation;",
        "> 1: MaxFactor slower).",
        "Both are measured, not derived. The analytic MaxFactor count (sum of rows + cols over matrices plus",
        "vector sizes) is " + ", ".join(
            f"{MODELS[k][0]}: {counts[k][2]:,} numbers x 4 bytes "
            + ("=" if 4 * counts[k][2] == rows[k]["MaxFactor"]["state_bytes"] else "!=")
            + " the measured state"
            for k in rows
        ) + ".",
        "",
        "Step time: per matrix MaxFactor runs more, smaller operations than AdamW (statistics, max-normalisation,",
        "row maxima; one full-size temporary), and conv kernels factored as batches of 3x3 matrices are the",
        "slowest case. The optimizer step is a small part of a training step (forward + backward dominate;",
        "see `optim_step_time` in ESPnet's train.log).",
        "",
    ]
    return "\n".join(lines)


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="Markdown file to write (default: print)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows: Dict[str, Dict[str, Dict[str, float]]] = {}
    counts: Dict[str, Tuple[int, int, int, int]] = {}
    for key in args.models:
        model = MODELS[key][1]()
        counts[key] = breakdown(model)
        rows[key] = measure(model, args.repeats)
        print(key, rows[key], file=sys.stderr)
    text = report(rows, counts, args.repeats)
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
