"""Beam search over the dual decoder at whisper-base size: peak memory and time, two code versions.

    OMP_NUM_THREADS=1 .venv/bin/python bench/beam_memory.py --before a3cd1b3 --out bench/BEAM_MEMORY.md

(run by path from the repository root, not with ``-m``: each measurement is a child process that
imports ``echo_plugin`` from the tree it measures.) ``--before REF`` exports that commit's
``echo_plugin`` with ``git archive``; the other version is the working tree.

The search: ESPnet's ``BatchBeamSearch``, beam 4, the decoder as its only scorer, a fixed output
length of 50 tokens (``maxlenratio=-50``: no end detection, every step runs), over a
``DualCrossAttentionDecoder`` with whisper-base's decoder sizes (V=51865, D=512, 8 heads, MLP 2048,
6 layers, no key bias, tied embeddings, learned gates) and random weights, on a random encoder
output of T=1500 frames (whisper-base's 30 s). A bias on the ``<eos>`` logit (``--eos-bias``, one
row per value) makes hypotheses end along the way, as they do in real decoding: a finished
hypothesis keeps its state until the search returns (at bias 0 only the last step ends any).

Per child: the wall time of one search; the process's peak RSS (``ru_maxrss``) above its RSS just
before it; the distinct tensor storages the finished hypotheses' states reference when the search
ends (what they keep alive); then, in a second search under the torch profiler, the peak of torch's
allocations above those before it (running sum of ``[memory]`` events; no allocator caching).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

REPO = Path(__file__).resolve().parents[1]
VOCAB, D_MODEL, HEADS, UNITS, LAYERS, FRAMES = 51865, 512, 8, 2048, 6, 1500
MiB = 2**20


def rss_bytes() -> int:
    """Resident set size of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def storage_bytes(obj: Any, seen: Set[int]) -> int:
    """Bytes of the tensor storages reachable from ``obj`` (tuples, lists, dicts, dataclasses) not in ``seen``."""
    import torch

    if torch.is_tensor(obj):
        storage = obj.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return storage.nbytes()
    if isinstance(obj, (tuple, list)):
        return sum(storage_bytes(o, seen) for o in obj)
    if isinstance(obj, dict):
        return sum(storage_bytes(o, seen) for o in obj.values())
    if dataclasses.is_dataclass(obj):
        return sum(storage_bytes(getattr(obj, f.name), seen) for f in dataclasses.fields(obj))
    return 0


def child(steps: int, beam: int, eos_bias: float) -> Dict[str, Any]:
    """One measurement with the ``echo_plugin`` this process imports (see the module doc)."""
    import torch

    from echo_plugin.asr.decoder.dual_decoder import DualCrossAttentionDecoder
    from echo_plugin.espnet_legacy import BatchBeamSearch

    sys.path.append(str(REPO))  # bench.attention_layer; echo_plugin stays the one imported above
    from bench.attention_layer import peak_bytes

    torch.manual_seed(0)
    decoder = DualCrossAttentionDecoder(
        VOCAB, D_MODEL, attention_heads=HEADS, linear_units=UNITS, num_blocks=LAYERS, dropout_rate=0.0,
        key_bias=False, tie_embeddings=True,
    ).eval()  # fmt: skip
    eos = VOCAB - 1
    with torch.no_grad():
        decoder.output_layer.bias[eos] += eos_bias
    memory = torch.randn(FRAMES, D_MODEL)
    ended: List[Any] = []

    class Search(BatchBeamSearch):  # keeps the finished hypotheses to measure what they hold
        def post_process(self, i, maxlen, minlen, maxlenratio, running_hyps, ended_hyps):
            out = super().post_process(i, maxlen, minlen, maxlenratio, running_hyps, ended_hyps)
            ended[:] = ended_hyps
            return out

    search = Search(
        scorers={"decoder": decoder}, weights={"decoder": 1.0}, beam_size=beam, vocab_size=VOCAB, sos=eos, eos=eos
    )
    with torch.no_grad():
        before = rss_bytes()
        start = time.perf_counter()
        nbest = search(memory, maxlenratio=-float(steps), minlenratio=0.0)
        seconds = time.perf_counter() - start
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        held = storage_bytes([h.states["decoder"] for h in ended], set())
        n_ended = len(ended)
        best = [int(t) for t in nbest[0].yseq], float(nbest[0].score)
        del nbest, ended[:]
        torch_peak = peak_bytes(lambda: search(memory, maxlenratio=-float(steps), minlenratio=0.0), torch.device("cpu"))
    return {
        "seconds": seconds, "peak_rss": peak_rss, "torch_peak": torch_peak, "held": held, "ended": n_ended,
        "best": best, "echo_plugin": str(Path(sys.modules["echo_plugin"].__file__).parent),
    }  # fmt: skip


def run_child(code_dir: Path, args: argparse.Namespace, eos_bias: float) -> Dict[str, Any]:
    """``child`` in a fresh process importing echo_plugin from ``code_dir``."""
    env = dict(os.environ, PYTHONPATH=str(code_dir), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--steps", str(args.steps),
           "--beam", str(args.beam), "--eos-bias", str(eos_bias)]  # fmt: skip
    out = subprocess.run(cmd, env=env, cwd=tempfile.gettempdir(), capture_output=True, text=True)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]}
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(result["echo_plugin"]).parent.resolve() != code_dir.resolve():
        raise SystemExit(f"bench/beam_memory.py: the child imported {result['echo_plugin']}, not {code_dir}")
    return result


def export(ref: str, into: Path) -> None:
    """``echo_plugin`` of commit ``ref`` under ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "echo_plugin"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def report(args: argparse.Namespace, runs: Dict[Tuple[float, str], List[Dict[str, Any]]], head: str) -> str:
    """The markdown report of the interleaved runs."""
    load = os.getloadavg()[0]
    lines = [
        "# Beam search memory and time: dual decoder, whisper-base size",
        "",
        f"Generated by `OMP_NUM_THREADS=1 .venv/bin/python bench/beam_memory.py --before {args.before} "
        f"--repeats {args.repeats} --eos-bias {' '.join(map(str, args.eos_bias))} --out {args.out}` on "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Do not edit by hand: rerun the command.",
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} logical cores, OMP_NUM_THREADS=1, Python "
        f"{platform.python_version()}; 1-minute load average at the end {load:.1f} (a shared machine: times vary)",
        f"- search: ESPnet BatchBeamSearch, beam {args.beam}, fixed length {args.steps} tokens (maxlenratio "
        f"-{args.steps}), decoder the only scorer; DualCrossAttentionDecoder V={VOCAB}, D={D_MODEL}, {HEADS} heads, "
        f"MLP {UNITS}, {LAYERS} layers, random weights; encoder output T={FRAMES}; <eos> logit bias as in the "
        "table (finished hyps: how many ended, the last step's included)",
        f"- before: `{args.before}` (`git archive`); after: the working tree at `{head}` (with any uncommitted "
        "changes)",
        "- time: wall-clock seconds of one search (median of the repeats, before/after interleaved); "
        "peak RSS: `ru_maxrss` minus RSS just before the search; torch peak: the torch profiler's running sum of "
        "allocations during a second search (no allocator caching); held by finished: bytes of the distinct tensor "
        "storages that the finished hypotheses' decoder states reference when the search returns",
        "",
        "| <eos> bias | code | time | peak RSS | torch peak | held by finished | finished hyps | best score |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    same: List[bool] = []
    for (bias, name), results in runs.items():
        failed = [r for r in results if "error" in r]
        if failed:
            lines.append(f"| {bias} | {name} | failed: {failed[0]['error']} | | | | | |")
            continue
        med = {k: statistics.median(r[k] for r in results) for k in ("seconds", "peak_rss", "torch_peak", "held")}
        lines.append(
            f"| {bias} | {name} | {med['seconds']:.1f} s | {med['peak_rss'] / MiB:.0f} MiB "
            f"| {med['torch_peak'] / MiB:.0f} MiB | {med['held'] / MiB:.1f} MiB | {results[0]['ended']} "
            f"| {results[0]['best'][1]:.4f} |"
        )
    gap = 0.0
    for bias in args.eos_bias:
        good = [r for (b, _), rs in runs.items() if b == bias for r in rs if "error" not in r]
        same.append(len({json.dumps(r["best"][0]) for r in good}) == 1)
        gap = max([gap] + [abs(r["best"][1] - good[0]["best"][1]) for r in good])
    lines += ["", f"Best hypothesis identical before/after at every bias: {'yes' if all(same) else 'NO'}; "
              f"largest difference of its score: {gap:.2e}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="HEAD", help="commit whose echo_plugin is 'before'")
    parser.add_argument("--out", type=Path, default=None, help="markdown report (default: print)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--eos-bias", type=float, nargs="+", default=[0.0, 2.0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.steps, args.beam, args.eos_bias[0])))
        return
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    runs: Dict[Tuple[float, str], List[Dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        export(args.before, Path(tmp))
        for bias in args.eos_bias:
            for _ in range(args.repeats):
                for name, code in ((f"before ({args.before})", Path(tmp)), ("after", REPO)):
                    runs.setdefault((bias, name), []).append(run_child(code, args, bias))
                    print(bias, name, runs[bias, name][-1], file=sys.stderr)
    text = report(args, runs, head.stdout.strip())
    if args.out is None:
        print(text, end="")
    else:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
