"""Training throughput of whole recipe configs, and the GPU time it implies (an estimate).

    OMP_NUM_THREADS=1 python -m bench.train_throughput \\
        --configs egs/librispeech_100/asr1/conf/tuning/*.yaml --out bench/TRAIN_THROUGHPUT.md
    python -m bench.train_throughput --device cuda --amp --batch_seconds 0 \\
        --configs egs/librispeech_100/asr1/conf/tuning/*.yaml      # measure on a GPU instead

For each config the model is built through ESPnet's ``ASRTask.build_model`` (vocabulary
``--vocab``, default 5000) and trained on random batches in train mode (SpecAug on):
``--utt_seconds``-long utterances, as many as fill ``--batch_seconds`` of audio (0 = the
config's own batch: ``batch_bins`` samples, ESPnet's numel batch), with
``--tokens_per_second`` random tokens each. One step is forward + backward + Adam step;
the median of ``--steps`` steps after ``--warmup`` is reported, as seconds of audio trained
per wall-clock second.

The FLOPs of one step are 3 x the forward FLOPs counted with ``torch.utils.flop_counter``
(matmuls and convolutions; attention through SDPA's math path so that its matmuls are
seen; backward = 2 x forward, see ``count_flops``). The GPU estimate divides them by an ASSUMED achieved rate
(``--gpu_tflops``, default both 80 and 20 TFLOP/s: about 25 % of an A100's bf16 dense peak
of 312, and about 13 % of an A40's 150, the GPU ESPnet trained these configs on; narrow,
256-wide models spend much of their time in memory-bound layers), then scales
to ``--epoch_hours`` of audio per epoch (default: train-clean-100's 100.6 h, speed-perturbed
0.9/1.0/1.1 = 303.8 h) and the config's ``max_epoch``. Data loading, validation and
decoding are not counted. The CPU measurement checks the FLOP count against a real
run: achieved CPU GFLOP/s = counted FLOPs / measured time.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from echo_plugin.recipe.overlay import espnet_config, load_config

LIBRISPEECH_100_HOURS = 100.6  # train-clean-100 (LibriSpeech paper, table 1)
SPEED_FACTORS = (0.9, 1.0, 1.1)


@dataclass
class Measurement:
    """One config's numbers."""

    config: str
    params: int
    max_epoch: int
    batch_utts: int
    utt_seconds: float
    step_seconds: float
    step_flops: int

    @property
    def audio_per_second(self) -> float:
        """Seconds of audio trained per wall-clock second."""
        return self.batch_utts * self.utt_seconds / self.step_seconds

    @property
    def gflop_per_audio_second(self) -> float:
        return self.step_flops / (self.batch_utts * self.utt_seconds) / 1e9


def build_model(config: Path, vocab: int) -> torch.nn.Module:
    """The ESPnet ASR model of a training config (an overlay merged), with ``vocab`` tokens."""
    import echo_plugin

    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens.txt"
        tokens.write_text("\n".join(["<blank>", "<unk>", *(f"t{i}" for i in range(vocab - 3)), "<sos/eos>"]) + "\n")
        merged = espnet_config(config, tmp)
        args = ASRTask.get_parser().parse_args(["--config", str(merged), "--token_list", str(tokens)])
        args.normalize = None
        return ASRTask.build_model(args)


def random_batch(n_utts: int, utt_seconds: float, fs: int, vocab: int, tokens_per_second: float,
                 device: torch.device, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """speech (B, samples), speech_lengths (B,), text (B, L) ids in [2, vocab-1), text_lengths (B,)."""
    gen = torch.Generator().manual_seed(seed)
    samples = int(utt_seconds * fs)
    n_tokens = max(1, int(utt_seconds * tokens_per_second))
    speech = 0.1 * torch.randn(n_utts, samples, generator=gen)
    text = torch.randint(2, vocab - 1, (n_utts, n_tokens), generator=gen)
    lengths = torch.full((n_utts,), samples)
    text_lengths = torch.full((n_utts,), n_tokens)
    return tuple(t.to(device) for t in (speech, lengths, text, text_lengths))


def train_step(model: torch.nn.Module, optim: torch.optim.Optimizer, batch: tuple[torch.Tensor, ...],
               amp: bool) -> None:
    """Forward, backward and one Adam step."""
    device_type = batch[0].device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
        loss = model(*batch)[0]
    loss.backward()
    optim.step()
    optim.zero_grad(set_to_none=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(model: torch.nn.Module, batch: tuple[torch.Tensor, ...], steps: int, warmup: int,
               amp: bool) -> float:
    """Median seconds of one training step."""
    optim = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for i in range(warmup + steps):
        sync(batch[0].device)
        start = time.perf_counter()
        train_step(model, optim, batch, amp)
        sync(batch[0].device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def count_flops(model: torch.nn.Module, batch: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one forward + backward: 3 x the counted forward (train mode, SDPA decomposed so
    attention matmuls count). Backward = 2 x forward (input and weight gradients) is the usual
    rule; torch 2.12's flop counter cannot count it directly, as it ignores ``groups`` in the
    convolution backward and so counts a depthwise convolution's backward 256-512x too high."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(*batch)
    return 3 * counter.get_total_flops()


def batch_shape(config: dict, batch_seconds: float, utt_seconds: float, fs: int) -> int:
    """Utterances per batch: ``batch_seconds`` of audio, or the config's numel batch when 0."""
    if batch_seconds <= 0:
        batch_seconds = config.get("batch_bins", 1_000_000) / fs
    return max(1, round(batch_seconds / utt_seconds))


def measure(config_file: Path, args: argparse.Namespace, device: torch.device) -> Measurement:
    config = load_config(config_file)
    fs = (config.get("frontend_conf") or {}).get("fs", 16000)
    torch.manual_seed(0)
    model = build_model(config_file, args.vocab).to(device).train()
    n_utts = batch_shape(config, args.batch_seconds, args.utt_seconds, fs)
    batch = random_batch(n_utts, args.utt_seconds, fs, args.vocab, args.tokens_per_second, device)
    step = time_steps(model, batch, args.steps, args.warmup, args.amp)
    flops = count_flops(model, batch) if device.type == "cpu" or args.count_flops else 0
    return Measurement(str(config_file), sum(p.numel() for p in model.parameters() if p.requires_grad),
                       int(config.get("max_epoch", 1)), n_utts, args.utt_seconds, step, flops)


def epoch_hours_default() -> float:
    return LIBRISPEECH_100_HOURS * sum(1 / f for f in SPEED_FACTORS)


def report(rows: list[Measurement], args: argparse.Namespace, device: str) -> str:
    """The Markdown report: measured numbers, then the GPU estimate with its assumptions."""
    threads = torch.get_num_threads()
    lines = [
        "# Training throughput and estimated GPU time",
        "",
        f"Generated by `python -m bench.train_throughput {' '.join(sys.argv[1:])}` on "
        f"{datetime.date.today().isoformat()}: {device}, {threads} torch thread(s), "
        f"python {platform.python_version()}, torch {torch.__version__}.",
        "",
        f"Batch: random {args.utt_seconds:g} s utterances, {args.tokens_per_second:g} tokens/s, "
        f"vocabulary {args.vocab}; one step = forward + backward + Adam, train mode, "
        f"{'bf16 autocast' if args.amp else 'float32'}; median of {args.steps} steps after {args.warmup}.",
        "",
        "## Measured",
        "",
        "|config|params (M)|batch|s/step|audio s per s|GFLOP per audio s|achieved GFLOP/s|",
        "|---|---|---|---|---|---|---|",
    ]
    for m in rows:
        achieved = m.step_flops / m.step_seconds / 1e9 if m.step_flops else float("nan")
        lines.append(f"|{m.config}|{m.params / 1e6:.2f}|{m.batch_utts} x {m.utt_seconds:g} s|{m.step_seconds:.2f}|"
                     f"{m.audio_per_second:.1f}|{m.gflop_per_audio_second:.2f}|{achieved:.1f}|")
    per_epoch = args.epoch_hours > 0
    rates = ", ".join(f"{r:g}" for r in args.gpu_tflops)
    lines += [
        "",
        f"## Estimated GPU time (assumed achieved rates: {rates} TFLOP/s"
        + (f"; {args.epoch_hours:.1f} h of audio per epoch)" if per_epoch else ")"),
        "",
        "Estimate, not a measurement: counted FLOPs per audio second x audio per epoch / the assumed "
        "achieved GPU rate. Data loading, validation and decoding are not included.",
        "",
        "|config|assumed TFLOP/s|GPU min per 100 h of audio|"
        + ("GPU min per epoch|epochs|GPU h total|" if per_epoch else ""),
        "|---|---|---|" + ("---|---|---|" if per_epoch else ""),
    ]
    for m in rows:
        for rate in args.gpu_tflops:
            per_audio_hour = m.gflop_per_audio_second * 3600 / (rate * 1e3)  # GPU seconds per audio hour
            epoch = per_audio_hour * args.epoch_hours / 3600
            tail = f"{epoch * 60:.1f}|{m.max_epoch}|{epoch * m.max_epoch:.1f}|" if per_epoch else ""
            lines.append(f"|{m.config}|{rate:g}|{per_audio_hour * 100 / 60:.1f}|" + tail)
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", type=Path, required=True, help="training configs (conf/tuning/*.yaml)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default %(default)s)")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (as ESPnet's use_amp on Ampere+ GPUs)")
    p.add_argument("--vocab", type=int, default=5000, help="token list size (%(default)s)")
    p.add_argument("--utt_seconds", type=float, default=15.0, help="utterance length (%(default)s s)")
    p.add_argument("--batch_seconds", type=float, default=60.0,
                   help="audio per batch; 0 = the config's batch_bins (%(default)s s)")
    p.add_argument("--tokens_per_second", type=float, default=3.5,
                   help="tokens per audio second (%(default)s: LibriSpeech with BPE 5000)")
    p.add_argument("--steps", type=int, default=3, help="timed steps (%(default)s)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (%(default)s)")
    p.add_argument("--count_flops", action="store_true", help="also count FLOPs on a GPU (always on CPU)")
    p.add_argument("--gpu_tflops", type=float, nargs="+", default=[80.0, 20.0],
                   help="assumed achieved GPU TFLOP/s, one or more (%(default)s)")
    p.add_argument("--epoch_hours", type=float, default=epoch_hours_default(),
                   help="audio hours per epoch (%(default).1f: train-clean-100 x speed perturbation); "
                        "0 = report per 100 h of audio only")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    rows = []
    for config in args.configs:
        try:
            rows.append(measure(config, args, device))
        except Exception as e:  # noqa: BLE001 - one config that does not build must not end the run
            print(f"{config}: skipped: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            continue
        print(f"{config}: {rows[-1].step_seconds:.2f} s/step, {rows[-1].audio_per_second:.1f} audio s/s", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    text = report(rows, args, name)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
