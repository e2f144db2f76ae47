"""Decoding speed of the deployed path: a packed model run by ``transcribe`` on many files in one process.

    OMP_NUM_THREADS=1 python -m bench.transcribe_rtf --model exp/asr_train_asr_echo/train_asr_echo.zip \\
        --wav_scp dump/raw/test_connected/wav.scp --out bench/TRANSCRIBE.md

Each run is a fresh process (``--worker``) doing what ``python -m echo_plugin.bin.transcribe
--model M --wav_scp S --batch_size B`` does, with its own functions (``readable``,
``recordings``, ``transcribe_recordings``, ``output_line``), timed in parts:

* start-up: the imports of the CLI module, and ``load`` (unpacking the archive, ESPnet's imports,
  building the model with strict weights, the beam search); reported apart, not in the RTF;
* decoding, from the first file read to the last line written: reading each file, its own
  speaker statistics (``--speaker per_file``, the CLI's default), chunking, the encoder (batched
  with ``--batch_size`` > 1), ESPnet's beam search on each file; RTF = decode seconds / audio seconds.
  The time spent in each part is measured by wrapping the functions that do it.

Runs of the batch sizes alternate (``--repeats`` rounds), each reporting its median; the
transcripts of each batch size are compared with batch 1's, and scored against the references
(``text`` beside the wav.scp). The machine, threads and load average are recorded: on a machine
shared with other jobs the times are indicative.
"""
from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402  (the worker's import time is measured from STARTED)
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TARGET_RTF = 0.02


# --------------------------------------------------------------------------- the worker (one fresh process)


def worker(model_path: Path, wav_scp: Path, batch_size: int, limit: int | None,
           decode_config: Path | None = None) -> dict:
    """One transcribe run, timed in parts (see the module docstring) -> a JSON-able dict."""
    import yaml

    from echo_plugin.bin import transcribe as cli

    imported = time.perf_counter()
    import torch

    torch_imported = time.perf_counter()
    from echo_plugin.inference.transcriber import quiet

    with quiet():  # what load() imports first: ESPnet's inference module (its tasks, nltk, ...) and the plugin
        import espnet2.bin.asr_inference  # noqa: F401

        from echo_plugin.inference import batch_encode, speaker_speech2text  # noqa: F401
    espnet_imported = time.perf_counter()
    from echo_plugin.inference.batch_transcribe import transcribe_recordings
    from echo_plugin.inference.chunking import ChunkingConfig

    chunking = ChunkingConfig()
    overrides = yaml.safe_load(decode_config.read_text(encoding="utf-8")) if decode_config else None
    model = cli.load(model_path, overrides=overrides, chunking=chunking)
    loaded = time.perf_counter()

    parts = {"read": 0.0, "speaker statistics": 0.0, "frontend + encoder": 0.0, "beam search": 0.0}

    def timed(name: str, function):
        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                parts[name] += time.perf_counter() - start
        return call

    model.read = timed("read", model.read)
    cli.speaker_statistics = timed("speaker statistics", cli.speaker_statistics)
    batch_encode.encode_batch = timed("frontend + encoder", batch_encode.encode_batch)
    s2t = model.speech2text
    s2t._decode_single_sample = timed("beam search", s2t._decode_single_sample)

    pairs = list(cli.inputs([], wav_scp))[:limit]
    console = cli.Console(len(pairs), progress=False)
    failed: list[str] = []
    texts, seconds, chunked = {}, 0.0, 0
    start, cpu_start = time.perf_counter(), time.process_time()
    items = cli.recordings(model, cli.readable(model, iter(pairs), failed, console), "per_file", 0.0)
    for result in transcribe_recordings(model, items, batch_size, chunking, 1):
        seconds += result.seconds
        if result.error is None:
            cli.output_line(result, "text", 1, model.fs)
            texts[result.utt] = result.hyps[0].text
            chunked += len(result.chunks) > 1
    decoded, cpu_decoded = time.perf_counter(), time.process_time()
    return {
        "batch_size": batch_size, "files": len(pairs), "failed": failed, "audio_seconds": seconds,
        "chunked_files": chunked, "import_s": imported - STARTED, "torch_s": torch_imported - imported,
        "espnet_s": espnet_imported - torch_imported, "load_s": loaded - espnet_imported,
        "decode_s": decoded - start, "decode_cpu_s": cpu_decoded - cpu_start, "parts": parts, "texts": texts,
        "batch_exact": model.batch_exact,
        "torch_threads": torch.get_num_threads(), "decoding": model.options,
    }


# --------------------------------------------------------------------------- the parent: runs and report


def run_worker(args: argparse.Namespace, batch_size: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    command = [sys.executable, "-m", "bench.transcribe_rtf", "--worker", "--model", str(args.model),
               "--wav_scp", str(args.wav_scp), "--batch_sizes", str(batch_size)]
    if args.limit:
        command += ["--limit", str(args.limit)]
    if args.decode_config:
        command += ["--decode_config", str(args.decode_config)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker (batch {batch_size}) failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    return result


def word_errors(refs: dict[str, str], texts: dict[str, str]) -> tuple[int, int]:
    from bench.export_int8 import edit_distance

    errors = sum(edit_distance(refs[u].split(), texts.get(u, "").split()) for u in refs)
    return errors, sum(len(r.split()) for r in refs.values())


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def report(args: argparse.Namespace, runs: dict[int, list[dict]], loads: tuple[str, str]) -> str:
    import platform

    import torch

    from bench.export_int8 import cpu_name, git_state

    text_path = args.wav_scp.with_name("text")
    refs = {}
    if text_path.is_file():
        refs = {u: t for u, _, t in (line.partition(" ") for line in text_path.read_text().splitlines())}
    first = runs[args.batch_sizes[0]][0]
    refs = {u: refs[u] for u in first["texts"] if u in refs}
    base = first["texts"]
    lines = [
        "# Deployed transcription speed: RTF of `transcribe` on many files",
        "",
        f"Generated by `python -m bench.transcribe_rtf --model {args.model} --wav_scp {args.wav_scp}"
        f"{f' --limit {args.limit}' if args.limit else ''}"
        f"{f' --decode_config {args.decode_config}' if args.decode_config else ''}"
        f" --batch_sizes {' '.join(map(str, args.batch_sizes))} "
        f"--repeats {args.repeats} --out {args.out}` on {time.strftime('%Y-%m-%d')}: {cpu_name()}, "
        f"{os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} (torch "
        f"{first['torch_threads']} thread(s) in the workers), python {platform.python_version()}, torch "
        f"{torch.__version__}; the repository at {git_state()}.",
        "",
        f"Load average (1/5/15 min) before and after: {loads[0]} and {loads[1]}. The machine was shared with "
        "trainings (2 cores, load above 2 means they waited for each other): every time here is indicative, "
        "slower than on an idle machine; the batch sizes ran alternately, so they met the same load.",
        "",
        f"Model: `{args.model}`; decoding options (packed with it"
        f"{f', then {args.decode_config}' if args.decode_config else ''}): {json.dumps(first['decoding'])} "
        f"(ESPnet's batched beam search over the beam, one file at a time); encoder batching exact for this model: "
        f"{first['batch_exact']}. Audio: {first['files']} files of `{args.wav_scp}`, "
        f"{first['audio_seconds']:.1f} s ({first['audio_seconds'] / max(first['files'], 1):.2f} s mean), "
        f"{first['chunked_files']} split into chunks (limit 20 s); speaker statistics per file (the CLI default).",
        "",
        "## Decoding RTF (model loading excluded)",
        "",
        f"RTF = decode seconds / audio seconds, from the first file read to the last line out, median of "
        f"{args.repeats} run(s) per batch size (each a fresh process). Target: RTF <= {TARGET_RTF} on connected "
        "digits on this 2-core machine.",
        "",
        "|batch size|RTF (median)|RTF (all runs)|CPU-time RTF|ms per file|read|speaker statistics|frontend + encoder"
        "|beam search|other|meets target|same transcripts as batch 1|WER|",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in args.batch_sizes:
        results = runs[size]
        rtfs = [r["decode_s"] / r["audio_seconds"] for r in results]
        best = results[min(range(len(results)), key=lambda i: abs(rtfs[i] - median(rtfs)))]
        per_file = {k: 1000 * v / best["files"] for k, v in best["parts"].items()}
        per_file["other"] = 1000 * best["decode_s"] / best["files"] - sum(per_file.values())
        total = 1000 * best["decode_s"] / best["files"]
        same = sum(best["texts"].get(u) == t for u, t in base.items())
        wer = "-"
        if refs:
            errors, words = word_errors(refs, best["texts"])
            wer = f"{100 * errors / words:.2f} % ({errors}/{words})"
        lines.append(
            f"|{size}|{median(rtfs):.4f}|{', '.join(f'{r:.4f}' for r in rtfs)}|"
            f"{median([r['decode_cpu_s'] / r['audio_seconds'] for r in results]):.4f}|"
            f"{1000 * best['decode_s'] / best['files']:.1f}|"
            + "|".join(f"{per_file[k]:.1f} ({100 * per_file[k] / total:.0f} %)" for k in (
                "read", "speaker statistics", "frontend + encoder", "beam search", "other"))
            + f"|{'yes' if median(rtfs) <= TARGET_RTF else 'no'}|{same}/{len(base)}|{wer}|")
    lines += [
        "",
        "CPU-time RTF: the process's CPU seconds (user + system) while decoding / audio seconds, median over the "
        "runs: what the decoding cost this process, less sensitive to the other jobs than the wall clock (an idle "
        "core would be near it; cache and memory contention still count). The part columns are milliseconds per "
        "file (and shares of the decode time) of the median run, measured by wrapping "
        "the functions that do them (read: `Transcriber.read`; speaker statistics: the CLI's `speaker_statistics`, "
        "the frontend over the file and its speech frames; frontend + encoder: `batch_encode.encode_batch`; "
        "beam search: ESPnet's `Speech2Text._decode_single_sample`); other: chunking, batching, output lines.",
        "",
        "## Start-up (not in the RTF)",
        "",
        "|batch size|CLI module (s)|torch (s)|ESPnet's asr_inference + plugin (s)|load: unpack + build (s)"
        "|start-up total (s)|whole process (s)|",
        "|---|---|---|---|---|---|---|",
    ]
    for size in args.batch_sizes:
        results = runs[size]
        keys = ("import_s", "torch_s", "espnet_s", "load_s")
        values = [median([r[k] for r in results]) for k in keys]
        total = median([sum(r[k] for k in keys) for r in results])
        lines.append("|" + "|".join([str(size), *(f"{v:.2f}" for v in values), f"{total:.2f}",
                                     f"{median([r['process_s'] for r in results]):.1f}"]) + "|")
    lines += ["", "Medians over the runs; the whole process includes the interpreter's start and exit.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="packed model (stage 8's zip)")
    parser.add_argument("--wav_scp", type=Path, required=True, help="the files (references: text beside it)")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=2, help="rounds of runs, the batch sizes alternating")
    parser.add_argument("--limit", type=int, default=None, help="the first N files only")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    parser.add_argument("--decode_config", type=Path, default=None,
                        help="decoding options over the packed ones (transcribe's --decode_config)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.model, args.wav_scp, args.batch_sizes[0], args.limit, args.decode_config)))
        return 0
    from bench.export_int8 import load_average

    loads = [load_average()]
    runs: dict[int, list[dict]] = {size: [] for size in args.batch_sizes}
    for round_ in range(args.repeats):
        for size in args.batch_sizes:
            result = run_worker(args, size)
            runs[size].append(result)
            print(f"round {round_ + 1}, batch {size}: RTF {result['decode_s'] / result['audio_seconds']:.4f}, "
                  f"load {result['load_s']:.2f} s", file=sys.stderr, flush=True)
    loads.append(load_average())
    text = report(args, runs, (loads[0], loads[1]))
    print(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
