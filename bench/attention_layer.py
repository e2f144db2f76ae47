"""One encoder layer, Echo's variants against ESPnet's stock layer: training-step time and peak memory.

    python -m bench.attention_layer --out bench/REPORT.md              # CPU, ~20 minutes (T up to 4000)
    python -m bench.attention_layer --device cuda --out bench/REPORT_cuda.md

Everything runs in one process. For each sequence length T the harness builds,
at the same width (d_model 256, 4 heads, FFN 1024, batch 4):

* the reference: ESPnet's ``EncoderLayer`` with ``MultiHeadedAttention`` and
  ``PositionwiseFeedForward``, pre-norm (``normalize_before=True``), stock options;
* ESPnet's layer with ``use_sdpa=True`` (for context);
* Echo's ``EncoderLayer`` (``standard`` attention on the fused kernel) once per
  ROTARY variant (masking ``hard``) and once per other MASKING variant (rotary
  ``standard``); ``--all-pairs`` crosses them;
* the rows of ``EXTRA_ROTARIES`` (the full pitch-aware rotary with soft masking);
  the axial rotary gets (time, frequency) positions of spectrogram patch tokens;
* Echo's ``EncoderLayer`` once per other ATTENTION variant (rotary ``standard``,
  masking ``hard``, the variant's default conf). Variants are read from
  ``echo_plugin.catalog`` (entry-point variants included), so new ones appear
  without editing this file; each is built from its name alone
  (``ROTARY.build(name, head_dim=...)``) and skipped, with the reason, when that
  or a forward pass fails. A layer whose ``forward`` takes ``f0`` gets a
  synthetic pitch track, one that takes ``memory`` a fresh working memory per step.

With T=1000 and T=4000 both measured, the report adds each variant's time ratio
T=4000 / T=1000: 4x is linear in T, 16x quadratic; windowed attention should stay
at or below about 6x.

Measured (see the report's header for the exact definitions): the median
wall-clock time of one forward + backward after warm-up, and the peak of bytes
allocated by torch during one forward + backward above what was allocated
before it (inputs and parameters excluded; activations, gradients and
temporaries included).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import inspect
import json
import math
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

REFERENCE = "espnet (stock)"
SCALING = (1000, 4000)  # default (short, long) lengths of the report's time-ratio column (--ratio)
FRAME_PERIOD = 0.04  # seconds per frame after 4x subsampling of 10 ms frames (for the synthetic f0)


@dataclass(frozen=True)
class Shape:
    """The layer and batch every variant is measured at."""

    batch: int = 4
    d_model: int = 256
    heads: int = 4
    ffn: int = 1024
    dropout: float = 0.1


@dataclass
class Case:
    """One measurable layer: ``run(x, keep) -> y`` with x, y (B, T, D) and keep (B, T) True = real frame."""

    name: str
    layer: nn.Module
    run: Callable[[Tensor, Tensor], Tensor]
    context: Callable[[], ContextManager] = contextlib.nullcontext
    note: str = ""


@dataclass
class Result:
    seconds: Dict[int, float] = field(default_factory=dict)
    spread: Dict[int, float] = field(default_factory=dict)  # max / min - 1 over the timed repeats
    peak_bytes: Dict[int, int] = field(default_factory=dict)
    failed: Dict[int, str] = field(default_factory=dict)


def _accepts(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _first_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip().splitlines()[0]
    return text if len(text) < 160 else text[:157] + "..."


# ----------------------------------------------------------------------------- layers


def espnet_case(shape: Shape, use_sdpa: bool) -> Case:
    from echo_plugin.espnet_legacy import nets

    MultiHeadedAttention = nets("pytorch_backend.transformer.attention").MultiHeadedAttention
    EncoderLayer = nets("pytorch_backend.transformer.encoder_layer").EncoderLayer
    PositionwiseFeedForward = nets("pytorch_backend.transformer.positionwise_feed_forward").PositionwiseFeedForward

    kwargs = {"use_sdpa": True} if use_sdpa else {}
    layer = EncoderLayer(
        shape.d_model,
        MultiHeadedAttention(shape.heads, shape.d_model, 0.0, **kwargs),
        PositionwiseFeedForward(shape.d_model, shape.ffn, shape.dropout),
        shape.dropout,
        normalize_before=True,
    )

    def run(x: Tensor, keep: Tensor) -> Tensor:
        return layer(x, keep[:, None, :])[0]

    return Case("espnet, use_sdpa=True" if use_sdpa else REFERENCE, layer, run)


def synthetic_f0(batch: int, frames: int, device: torch.device):
    """A pitch track on the layer's frames: 100-250 Hz contours with unvoiced (0) stretches.

    Returned as the layer's ``F0Track`` when that type exists, else as a (B, T) tensor.
    """
    t = torch.arange(frames, dtype=torch.float32, device=device) * FRAME_PERIOD
    offset = torch.arange(batch, dtype=torch.float32, device=device)[:, None]
    hz = 170.0 + 60.0 * torch.sin(2 * math.pi * 0.7 * t + offset)
    voiced = torch.sin(2 * math.pi * 0.45 * t + 2 * offset) > -0.4
    hz = hz * voiced
    try:
        from echo_plugin.nn.rotary.pitch import F0Track
    except ImportError:
        return hz
    return F0Track(hz, FRAME_PERIOD)


def _bind_masking(attention_cls: type, strategy: nn.Module) -> Callable[[], ContextManager]:
    """For an attention class that does not take ``masking`` yet: bind the strategy to the kernel it calls."""
    module = sys.modules[attention_cls.__module__]

    @contextlib.contextmanager
    def bound():
        original = module.attend
        module.attend = functools.partial(original, masking=strategy)
        try:
            yield
        finally:
            module.attend = original

    return bound


# Rows beyond one per catalog name: (label, rotary spec, masking). The full pitch-aware rotary
# (radii from f0 and the pitch-similarity score bias) with soft masking on the fused kernel.
EXTRA_ROTARIES: List[Tuple[str, Dict, str]] = [
    ("pitch_aware(radii, pitch_bias)", {"type": "pitch_aware", "conf": {"radii": True, "pitch_bias": 1.0}}, "soft"),
]
PATCH_FREQ_TOKENS = 5  # axial rotary: tokens are spectrogram patches, 5 frequency patches per time step


def echo_case(
    shape: Shape, rotary, masking: str, frames: int, device: torch.device, attention: str = "standard",
    label: Optional[str] = None,
) -> Case:
    """Echo's EncoderLayer: attention ``attention``, rotary ``rotary`` (name or spec), masking ``masking``."""
    from echo_plugin.catalog import ATTENTION, MASKING, ROTARY
    from echo_plugin.nn.layers import EncoderLayer, FeedForward

    head_dim = shape.d_model // shape.heads
    ROTARY.build(rotary, head_dim=head_dim)  # a variant that needs more than its name fails here
    attention_cls = ATTENTION.get(attention)
    kwargs = {"d_model": shape.d_model, "n_heads": shape.heads, "dropout": 0.0, "rotary": rotary}
    context: Callable[[], ContextManager] = contextlib.nullcontext
    note = ""
    if _accepts(attention_cls.__init__, "masking"):
        kwargs["masking"] = masking
    elif masking != "hard":  # hard is what the kernel does without a strategy
        strategy = MASKING.build(masking).to(device)
        context = _bind_masking(attention_cls, strategy)
        note = "masking bound at the kernel (the attention module takes no `masking` yet)"
    layer = EncoderLayer(
        ATTENTION.build(attention, **kwargs),
        FeedForward(shape.d_model, shape.ffn, shape.dropout),
        shape.d_model,
        shape.dropout,
    )
    extras = {}
    if _accepts(layer.forward, "f0"):
        extras["f0"] = synthetic_f0(shape.batch, frames, device)
    positions = torch.arange(frames, device=device)
    if rotary == "axial":  # patch tokens (input_layer patch2d): (time, frequency) positions, time-major
        from echo_plugin.nn.rotary.axial import grid_positions

        positions = grid_positions(-(-frames // PATCH_FREQ_TOKENS), PATCH_FREQ_TOKENS, device)[:frames]
        note = f"tokens are patches: (time, frequency) positions, {PATCH_FREQ_TOKENS} frequency patches per step"
    memory_cls = None
    if _accepts(layer.forward, "memory"):
        from echo_plugin.nn.attention.memory import WorkingMemory as memory_cls

    def run(x: Tensor, keep: Tensor) -> Tensor:
        memory = {} if memory_cls is None else {"memory": memory_cls()}
        return layer(x, keep, positions, **extras, **memory)

    return Case(echo_name(label or rotary, masking, attention), layer, run, context, note)


def echo_name(rotary: str, masking: str, attention: str = "standard") -> str:
    if attention == "standard":
        return f"echo, rotary={rotary}, masking={masking}"
    return f"echo, attention={attention}"


def attention_variants() -> List[str]:
    """ATTENTION names in the catalog other than ``standard`` (which the rotary/masking rows already use)."""
    from echo_plugin.catalog import ATTENTION

    return [name for name in ATTENTION.names() if name != "standard"]


def echo_variants(all_pairs: bool) -> List[Tuple[str, str]]:
    """(rotary, masking) pairs read from the catalog."""
    from echo_plugin.catalog import MASKING, ROTARY

    rotaries, maskings = ROTARY.names(), MASKING.names()
    if all_pairs:
        return [(r, m) for r in rotaries for m in maskings]
    base_rotary = "standard" if "standard" in rotaries else rotaries[0]
    return [(r, "hard") for r in rotaries] + [(base_rotary, m) for m in maskings if m != "hard"]


# ----------------------------------------------------------------------------- measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_step(case: Case, x: Tensor, keep: Tensor, grad: Tensor) -> None:
    """Forward, backward with a fixed output gradient; gradients dropped afterwards."""
    with case.context():
        out = case.run(x, keep)
        out.backward(grad)
    case.layer.zero_grad(set_to_none=True)
    x.grad = None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (the profiler's C++ start/stop lines) for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_bytes(fn: Callable[[], None], device: torch.device) -> int:
    """Peak torch-allocated bytes during ``fn()`` above those allocated when it starts.

    CUDA: the caching allocator's ``max_memory_allocated`` (reset first) minus
    ``memory_allocated`` at the start. CPU: the torch profiler's allocation events
    (``profile_memory=True``), summed in time order; the peak of that running sum.
    Neither counts allocator caching/fragmentation or memory outside torch.
    """
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - start
    from torch.profiler import ProfilerActivity, profile

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), _quiet_stderr():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        trace = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(trace)
        with open(trace) as f:
            events = json.load(f)["traceEvents"]
    allocations = sorted(
        (e["ts"], e["args"]["Bytes"])
        for e in events
        if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type") == 0
    )
    total = peak = 0
    for _, size in allocations:
        total += size
        peak = max(peak, total)
    return peak


def schedule(frames: int, repeats: Optional[int], warmup: Optional[int]) -> Tuple[int, int]:
    """(warmup, repeats) per length: fewer for long sequences to keep the CPU run short."""
    default = (2, 8) if frames <= 500 else (1, 4) if frames <= 1500 else (1, 2) if frames <= 3000 else (1, 1)
    return (default[0] if warmup is None else warmup), (default[1] if repeats is None else repeats)


def measure_length(
    builders: Sequence[Tuple[str, Callable[[int], Case]]],
    shape: Shape,
    frames: int,
    device: torch.device,
    warmup: int,
    repeats: int,
    results: Dict[str, Result],
    notes: Dict[str, str],
    log: Callable[[str], None],
) -> None:
    """Warm up, profile memory, then time (round-robin over the cases, so drift hits all alike) at one length."""
    gen = torch.Generator().manual_seed(frames)
    x = torch.randn(shape.batch, frames, shape.d_model, generator=gen).to(device).requires_grad_()
    grad = torch.randn(shape.batch, frames, shape.d_model, generator=gen).to(device)
    lengths = torch.tensor([frames - (frames * i) // 10 for i in range(shape.batch)], device=device)
    keep = torch.arange(frames, device=device)[None, :] < lengths[:, None]  # lengths T, 0.9T, 0.8T, ...

    cases: List[Case] = []
    for name, build in builders:
        try:
            torch.manual_seed(0)
            case = build(frames)
            case.layer.to(device).train()
            for _ in range(max(warmup, 1)):  # also proves the variant runs; the first step allocates extra
                _train_step(case, x, keep, grad)
            peak = peak_bytes(functools.partial(_train_step, case, x, keep, grad), device)
        except Exception as error:  # noqa: BLE001  (a broken variant is reported, not fatal)
            results.setdefault(name, Result()).failed[frames] = _first_line(error)
            log(f"  T={frames} {name}: skipped ({_first_line(error)})")
            continue
        if case.note:
            notes[name] = case.note
        results.setdefault(name, Result()).peak_bytes[frames] = peak
        cases.append(case)
    times: Dict[str, List[float]] = {case.name: [] for case in cases}
    for _ in range(repeats):
        for case in cases:
            _sync(device)
            start = time.perf_counter()
            _train_step(case, x, keep, grad)
            _sync(device)
            times[case.name].append(time.perf_counter() - start)
    for case in cases:
        result = results.setdefault(case.name, Result())
        result.seconds[frames] = statistics.median(times[case.name])
        result.spread[frames] = max(times[case.name]) / min(times[case.name]) - 1.0
        log(
            f"  T={frames} {case.name}: {1e3 * result.seconds[frames]:.1f} ms, "
            f"{result.peak_bytes[frames] / 2**20:.1f} MiB"
        )
    del cases


# ----------------------------------------------------------------------------- report


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    return f"CPU: {model}, {os.cpu_count()} logical cores"


def _cell(value: Optional[float], reference: Optional[float], unit: str, failed: Optional[str]) -> str:
    if value is None:
        return "skipped" if failed else "-"
    ratio = f"{value / reference:.2f}x" if reference else "n/a"
    return f"{ratio} ({value:.1f} {unit})"


def render(
    results: Dict[str, Result],
    order: Sequence[str],
    notes: Dict[str, str],
    lengths: Sequence[int],
    plan: Dict[int, Tuple[int, int]],
    shape: Shape,
    device: torch.device,
    command: str,
    scaling: Sequence[int] = SCALING,
    load: Optional[Tuple[float, float]] = None,
) -> str:
    import espnet

    ref = results.get(REFERENCE, Result())
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# One encoder layer: Echo vs ESPnet",
        "",
        f"Generated by `{command}` (run from the repository root) on {now}. "
        "Do not edit by hand: rerun the command.",
        "",
        f"- device: {device_description(device)}; torch {torch.__version__} "
        f"({torch.get_num_threads()} intra-op thread(s), "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), "
        f"espnet {espnet.__version__}, Python {platform.python_version()}"
        + (
            f"; 1-minute load average at start / end: {load[0]:.1f} / {load[1]:.1f} "
            "(above 1, other processes shared the cores: absolute times grow, the interleaved ratios much less)"
            if load else ""
        ),
        f"- shape: batch {shape.batch}, d_model {shape.d_model}, {shape.heads} heads, FFN {shape.ffn}, "
        f"float32, training mode (residual/FFN dropout {shape.dropout}, attention-weight dropout 0); "
        "utterance lengths T, 0.9T, 0.8T, 0.7T in each batch, padding masked",
        f"- reference (1.00x): `{REFERENCE}` = ESPnet's `EncoderLayer(MultiHeadedAttention, "
        "PositionwiseFeedForward (ReLU), normalize_before=True)` with its default options "
        "(explicit softmax attention; ESPnet's TransformerEncoder also uses it where flash_attn is absent)",
        "- echo: `echo_plugin.nn.layers.EncoderLayer` with `standard` attention (fused "
        "`scaled_dot_product_attention`), FeedForward (swish), layer_norm, pre-norm; one row per "
        "ROTARY variant (masking hard) and per other MASKING variant (rotary standard), "
        "and one row `echo, attention=<name>` per other ATTENTION variant (rotary standard, masking hard), "
        "each built from its catalog name with default conf; layers taking `f0` get a synthetic pitch track, "
        "layers taking `memory` a fresh working memory per step",
        "- time: median wall-clock seconds of one forward + `backward(fixed random gradient)`, "
        "after warm-up and the memory pass, cases interleaved round-robin; warm-up/repeats per T: "
        + ", ".join(f"T={t}: {w}/{r}" for t, (w, r) in plan.items())
        + "; largest spread (slowest/fastest repeat - 1) of any case: "
        + ", ".join(
            f"T={t}: {100 * max((r.spread[t] for r in results.values() if t in r.spread), default=0):.0f}%"
            for t in lengths
        ),
        "- peak memory: bytes allocated by torch during one forward + backward (after warm-up) above those "
        "allocated before it (inputs, parameters excluded; activations, gradients, temporaries included). "
        + (
            "CUDA: `torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`, "
            "minus `memory_allocated` at the start."
            if device.type == "cuda"
            else "CPU: running sum of the torch profiler's allocation events (`profile_memory=True`); "
            "allocator caching and non-torch memory are not counted."
        ),
        "- cells: ratio to the reference (absolute value); lower is better",
        "",
    ]
    for title, metric, unit, scale in (
        ("Time, forward + backward", "seconds", "ms", 1e3),
        ("Peak memory, forward + backward", "peak_bytes", "MiB", 1.0 / 2**20),
    ):
        lines += [f"## {title}", "", "| variant | " + " | ".join(f"T={t}" for t in lengths) + " |"]
        lines.append("|---|" + "---|" * len(lengths))
        for name in order:
            result = results.get(name, Result())
            cells = []
            for t in lengths:
                value = getattr(result, metric).get(t)
                reference = getattr(ref, metric).get(t)
                cells.append(
                    _cell(
                        None if value is None else value * scale,
                        None if reference is None else reference * scale,
                        unit,
                        result.failed.get(t),
                    )
                )
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += scaling_section(results, order, lengths, scaling)
    remarks = [f"- {name}: {note}" for name, note in notes.items()]
    for name in order:
        failed = sorted(results.get(name, Result()).failed.items())
        if failed and len(failed) == len(lengths):
            remarks.append(f"- {name}: skipped at every T; at T={failed[0][0]}: {failed[0][1]}")
        else:
            remarks += [f"- {name}, T={t}: skipped: {reason}" for t, reason in failed]
    if remarks:
        lines += ["## Notes", ""] + remarks + [""]
    return "\n".join(lines)


def scaling_section(
    results: Dict[str, Result], order: Sequence[str], lengths: Sequence[int], scaling: Sequence[int] = SCALING
) -> List[str]:
    """Markdown lines: each variant's time at T=long over its time at T=short, ``scaling = (short, long)``;
    empty unless both lengths were measured."""
    short, long = scaling
    if short not in lengths or long not in lengths:
        return []
    factor = long / short
    lines = [
        f"## Scaling: time T={long} / time T={short}",
        "",
        f"Linear cost in T gives {factor:.0f}x, quadratic {factor**2:.0f}x; target for windowed and "
        f"adaptive attention: at most {1.5 * factor:.0f}x (sub-quadratic; 6x for T=1000 -> 4000).",
        "",
        f"| variant | T={long} / T={short} |",
        "|---|---|",
    ]
    for name in order:
        seconds = results.get(name, Result()).seconds
        ratio = f"{seconds[long] / seconds[short]:.1f}x" if short in seconds and long in seconds else "-"
        lines.append(f"| {name} | {ratio} |")
    return lines + [""]


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.attention_layer", description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="write the Markdown report here (default: print it)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--lengths", type=int, nargs="+", default=[250, 1000, 3000, 4000], help="sequence lengths T")
    parser.add_argument("--batch", type=int, default=Shape.batch)
    parser.add_argument("--repeats", type=int, help="timed repeats for every T (default: 8 / 4 / 2 / 1 by T)")
    parser.add_argument("--warmup", type=int, help="warm-up steps for every T (default: 2 / 1 / 1 / 1 by T)")
    parser.add_argument("--all-pairs", action="store_true", help="every rotary x every masking variant")
    parser.add_argument(
        "--ratio", type=int, nargs=2, default=list(SCALING), metavar=("SHORT", "LONG"),
        help="lengths of the time-ratio column T=LONG / T=SHORT (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--only", nargs="+", metavar="TEXT",
        help="measure only the variants whose row name contains one of these (the reference is always measured)",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> str:
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(raw)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    shape = Shape(batch=args.batch)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    builders: List[Tuple[str, Callable[[int], Case]]] = [
        (REFERENCE, lambda frames: espnet_case(shape, use_sdpa=False)),
        ("espnet, use_sdpa=True", lambda frames: espnet_case(shape, use_sdpa=True)),
    ]
    for rotary, masking in echo_variants(args.all_pairs):
        builders.append(
            (
                f"echo, rotary={rotary}, masking={masking}",
                functools.partial(
                    lambda frames, r, m: echo_case(shape, r, m, frames, device), r=rotary, m=masking
                ),
            )
        )
    for label, spec, masking in EXTRA_ROTARIES:
        builders.append(
            (
                echo_name(label, masking),
                functools.partial(
                    lambda frames, r, m, n: echo_case(shape, r, m, frames, device, label=n),
                    r=spec, m=masking, n=label,
                ),
            )
        )
    for attention in attention_variants():
        builders.append(
            (
                echo_name("standard", "hard", attention),
                functools.partial(
                    lambda frames, a: echo_case(shape, "standard", "hard", frames, device, attention=a), a=attention
                ),
            )
        )
    if args.only:
        builders = [(n, b) for n, b in builders if n == REFERENCE or any(text in n for text in args.only)]
    results: Dict[str, Result] = {}
    notes: Dict[str, str] = {}
    plan = {t: schedule(t, args.repeats, args.warmup) for t in args.lengths}
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    for frames in args.lengths:
        log(f"T={frames}: {len(builders)} layers, warm-up {plan[frames][0]}, repeats {plan[frames][1]}")
        measure_length(builders, shape, frames, device, *plan[frames], results, notes, log)
    log(f"done in {time.perf_counter() - started:.0f} s")
    command = "python -m bench.attention_layer" + ("" if not raw else " " + shlex.join(raw))
    order = [name for name, _ in builders]
    load = (load_start, os.getloadavg()[0])
    report = render(results, order, notes, args.lengths, plan, shape, device, command, args.ratio, load)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report)
        log(f"wrote {args.out}")
    else:
        print(report)
    return report


if __name__ == "__main__":
    main()
