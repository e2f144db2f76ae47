"""Which chunk limit suits a model trained on short clips: WER and RTF of ``transcribe`` on long recordings.

    OMP_NUM_THREADS=1 python -m bench.chunking_limits \\
        --fold folds/test-lucas/dump/raw/dev folds/test-lucas/exp/asr_train_.../model.zip \\
        --fold folds/test-yweweler/dump/raw/dev folds/test-yweweler/exp/asr_train_.../model.zip \\
        --recordings 10 --limits 4 6 8 10 15 20 --jsonl /tmp/chunking.jsonl --out bench/CHUNKING.md

Long recordings are built from a fold's DEV speaker's connected-digit utterances (the ``-conn-``
ids of ``<data dir>/wav.scp``, references in ``text`` beside it): consecutive utterances in id order
are concatenated as they are (each keeps its own leading and trailing silence) until the recording
reaches a length drawn uniformly from ``--seconds`` (30-60 s); its reference is their texts joined.
No test speaker is used, so the limit chosen here can be carried by the recipe.

Each recording is decoded with the fold's packed model at every limit, as ``transcribe --model M
--max_chunk_seconds L`` decodes it (the CLI's ``recordings`` for per-file speaker statistics, then
``transcribe_recordings`` at batch 1 with ``ChunkingConfig.for_limit(L)``), the limits in an order
that turns with each recording so that a change of the machine's load meets all of them alike; the
folds' recordings alternate. Every decoding is appended to ``--jsonl`` as it ends (``--report_only``
renders a report from it). RTF = decode seconds / audio seconds (model loading excluded; chunking,
speaker statistics, encoder and beam search included); CPU-time RTF likewise from the process's CPU time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ALONE = "alone"  # the limit of the reference row: every utterance decoded alone


@dataclass
class LongRecording:
    """Concatenated utterances of one fold: its id, the utterance ids, samples (N,) at the model's rate,
    the reference words, each utterance's end sample."""

    rid: str
    utts: list[str]
    samples: np.ndarray
    reference: str
    ends: list[int]


def kaldi_map(path: Path) -> dict[str, str]:
    """A Kaldi ``<id> <value>`` file -> id -> value."""
    pairs = (line.partition(" ") for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {key: value.strip() for key, _, value in pairs}


def fold_name(data_dir: str | Path) -> str:
    """``.../folds/test-lucas/dump/raw/dev`` -> ``test-lucas`` (the directory three above the data dir)."""
    parts = Path(data_dir).resolve().parts
    return parts[-4] if len(parts) >= 4 else str(data_dir)


def build_recordings(data_dir: Path, read, fs: int, count: int, seconds: tuple[float, float], seed: int,
                     prefix: str) -> list[LongRecording]:
    """``count`` recordings from the connected utterances of ``data_dir`` (module docstring); ``read``:
    path -> samples (N,) at ``fs``."""
    wavs, texts = kaldi_map(data_dir / "wav.scp"), kaldi_map(data_dir / "text")
    utts = sorted(u for u in wavs if "-conn-" in u)
    if not utts:
        raise SystemExit(f"{data_dir}/wav.scp: no connected utterances (ids with '-conn-')")
    rng = np.random.default_rng(seed)
    out: list[LongRecording] = []
    position = 0
    for number in range(count):
        target = rng.uniform(*seconds) * fs
        taken: list[str] = []
        pieces: list[np.ndarray] = []
        while sum(len(p) for p in pieces) < target:
            if position >= len(utts):
                raise SystemExit(f"{data_dir}: {len(utts)} connected utterances make fewer than {count} recordings "
                                 f"of {seconds[0]}-{seconds[1]} s")
            taken.append(utts[position])
            pieces.append(read(wavs[utts[position]]))
            position += 1
        out.append(LongRecording(f"{prefix}-long{number:02d}", taken, np.concatenate(pieces),
                                 " ".join(texts[u] for u in taken), np.cumsum([len(p) for p in pieces]).tolist()))
    return out


def decode(model, recording: LongRecording, limit: float | str) -> dict:
    """One recording at one chunk limit, as the CLI decodes it -> text, chunks and times. ``limit`` ALONE:
    each of its utterances decoded alone (the model's training condition), the texts joined."""
    from echo_plugin.bin import transcribe as cli
    from echo_plugin.inference.batch_transcribe import transcribe_recordings
    from echo_plugin.inference.chunking import Chunk, ChunkingConfig, split

    if limit == ALONE:
        chunking = None
        chunks = [Chunk(a, b) for a, b in zip([0, *recording.ends[:-1]], recording.ends)]
    else:
        chunking = ChunkingConfig.for_limit(limit)
        chunks = split(recording.samples, model.fs, chunking)  # what transcribe_recordings cuts, for the lengths
    pieces = [(recording.rid, recording.samples)] if chunking is not None else [
        (f"{recording.rid}-{i}", recording.samples[c.start: c.end]) for i, c in enumerate(chunks)]
    start, cpu_start = time.perf_counter(), time.process_time()
    items = cli.recordings(model, iter([(rid, rid, x) for rid, x in pieces]), "per_file", 0.0)
    results = list(transcribe_recordings(model, items, 1, chunking, 1))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    errors = [r.error for r in results if r.error is not None]
    return {
        "text": " ".join(r.hyps[0].text for r in results if r.error is None and r.hyps[0].text),
        "error": errors[0] if errors else None,
        "wall_s": wall, "cpu_s": cpu, "chunks": [round((c.end - c.start) / model.fs, 3) for c in chunks],
        "forced": sum(c.forced for c in chunks),
    }


def run(args: argparse.Namespace) -> None:
    """Decode every recording at every limit, appending one JSON line per decoding to ``args.jsonl``."""
    import torch

    from echo_plugin.inference.transcriber import load

    torch.set_num_threads(1)
    folds = []
    with tempfile.TemporaryDirectory(prefix="chunking_bench_") as unpacked:
        for index, (data_dir, archive) in enumerate(args.fold):
            model = load(Path(archive), cache_dir=Path(unpacked) / f"fold{index}")
            prefix = fold_name(data_dir)
            recs = build_recordings(Path(data_dir), model.read, model.fs, args.recordings, tuple(args.seconds),
                                    args.seed + index, prefix)
            folds.append((str(data_dir), str(archive), model, recs))
            print(f"{archive}: {len(recs)} recordings, {sum(len(r.samples) for r in recs) / model.fs:.1f} s, "
                  f"options {model.options}", file=sys.stderr, flush=True)
        with open(args.jsonl, "a", encoding="utf-8") as sink:
            for number in range(args.recordings):
                for data_dir, archive, model, recs in folds:
                    recording = recs[number]
                    turn = number % len(args.limits)
                    for limit in args.limits[turn:] + args.limits[:turn]:
                        row = {"fold": data_dir, "model": archive, "recording": recording.rid, "utts": recording.utts,
                               "seconds": len(recording.samples) / model.fs, "reference": recording.reference,
                               "limit": limit, "options": model.options, "torch_threads": torch.get_num_threads(),
                               **decode(model, recording, limit)}
                        sink.write(json.dumps(row) + "\n")
                        sink.flush()
                    print(f"{recording.rid} ({len(recording.samples) / model.fs:.1f} s) done", file=sys.stderr,
                          flush=True)


def wer(rows: list[dict]) -> tuple[int, int]:
    """(word errors, reference words) over decodings."""
    from bench.export_int8 import edit_distance

    return (sum(edit_distance(r["reference"].split(), r["text"].split()) for r in rows),
            sum(len(r["reference"].split()) for r in rows))


def report(rows: list[dict], command: str, loads: tuple[str, str]) -> str:
    """The Markdown report of the decodings ``rows``."""
    import torch

    from bench.export_int8 import cpu_name, git_state

    limits = sorted({r["limit"] for r in rows}, key=lambda x: -1 if x == ALONE else x)
    folds = sorted({r["fold"] for r in rows})
    recordings = {r["recording"]: r for r in rows}
    complete = [rid for rid in recordings if {r["limit"] for r in rows if r["recording"] == rid} == set(limits)]
    rows = [r for r in rows if r["recording"] in complete]  # every limit on the same recordings
    audio = sum(recordings[rid]["seconds"] for rid in complete)
    lines = [
        "# Chunk limit for long recordings: WER and RTF of `transcribe` by `--max_chunk_seconds`",
        "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d')}: {cpu_name()}, {os.cpu_count()} cores, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} (torch "
        f"{rows[0]['torch_threads'] if rows else '?'} thread), python {platform.python_version()}, torch "
        f"{torch.__version__}; the repository at {git_state()}.",
        "",
        f"Load average (1/5/15 min) before and after: {loads[0]} and {loads[1]}. The machine was shared with "
        "trainings: times are indicative; the limits ran alternately on each recording, so they met the same load.",
        "",
        f"Audio: {len(complete)} long recordings, {audio:.1f} s ({audio / max(len(complete), 1):.1f} s mean, "
        f"{min(recordings[r]['seconds'] for r in complete):.1f}-{max(recordings[r]['seconds'] for r in complete):.1f}"
        " s), each consecutive connected-digit utterances of one fold's dev speaker concatenated as they are:",
        "",
    ]
    for fold in folds:
        mine = [rid for rid in complete if recordings[rid]["fold"] == fold]
        words = sum(len(recordings[r]["reference"].split()) for r in mine)
        lines.append(f"- `{fold}`: {len(mine)} recordings of {sum(len(recordings[r]['utts']) for r in mine)} "
                     f"utterances, {words} words, {sum(recordings[r]['seconds'] for r in mine):.1f} s; model "
                     f"`{recordings[mine[0]]['model'] if mine else '-'}`")
    if rows:
        lines += ["", f"Decoding options (packed with the models): {json.dumps(rows[0]['options'])}; batch 1, "
                  "speaker statistics per file (the CLI's defaults)."]
    lines += [
        "",
        "|limit (s)|WER pooled|" + "|".join(f"WER {fold_name(f)}" for f in folds)
        + "|chunks|mean chunk (s)|forced cuts|RTF (wall)|CPU-time RTF|",
        "|---|---|" + "---|" * len(folds) + "---|---|---|---|---|",
    ]
    for limit in limits:
        at = [r for r in rows if r["limit"] == limit]
        errors, words = wer(at)
        per_fold = []
        for fold in folds:
            e, w = wer([r for r in at if r["fold"] == fold])
            per_fold.append(f"{100 * e / max(w, 1):.1f} % ({e}/{w})")
        chunks = [c for r in at for c in r["chunks"]]
        seconds = sum(r["seconds"] for r in at)
        lines.append(
            f"|{'each utterance alone' if limit == ALONE else f'{limit:g}'}|"
            f"{100 * errors / max(words, 1):.1f} % ({errors}/{words})|" + "|".join(per_fold)
            + f"|{len(chunks)}|{np.mean(chunks):.1f}|{sum(r['forced'] for r in at)}|"
            f"{sum(r['wall_s'] for r in at) / seconds:.4f}|{sum(r['cpu_s'] for r in at) / seconds:.4f}|")
    failed = [f"{r['recording']} at {r['limit']}: {r['error']}" for r in rows if r["error"]]
    lines += ["", "Each utterance alone: the recordings' utterances decoded one by one at their own boundaries "
              "(what the model was trained on; no chunking), the reference for what cutting costs. Chunks: "
              "decoded pieces (utterances for that row). Forced cuts: chunk ends cut without a pause (the next "
              "chunk then starts 0.5 s earlier, less under 4 s). "
              + (f"Failed decodings: {'; '.join(failed)}." if failed else "No decoding failed."), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fold", nargs=2, action="append", metavar=("DEV_DATA_DIR", "MODEL_ZIP"), default=[],
                        help="a fold's dev data dir (wav.scp, text) and its packed model; repeat per fold")
    parser.add_argument("--recordings", type=int, default=10, help="long recordings per fold")
    parser.add_argument("--seconds", type=float, nargs=2, default=[30.0, 60.0], help="their length range")
    parser.add_argument("--limits", type=float, nargs="+", default=[4, 6, 8, 10, 15, 20])
    parser.add_argument("--alone", action="store_true",
                        help="also decode each recording's utterances alone (the reference row)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jsonl", type=Path, required=True, help="decodings appended here, one JSON line each")
    parser.add_argument("--report_only", action="store_true", help="render the report from --jsonl alone")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    args = parser.parse_args(argv)
    from bench.export_int8 import load_average

    loads = [load_average()]
    if not args.report_only:
        if not args.fold:
            parser.error("give --fold DEV_DATA_DIR MODEL_ZIP (one per fold)")
        if args.alone:
            args.limits = [ALONE, *args.limits]
        run(args)
    loads.append(load_average())
    rows = [json.loads(line) for line in args.jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    text = report(rows, " ".join(["python -m bench.chunking_limits", *(argv if argv is not None else sys.argv[1:])]),
                  (loads[0], loads[-1]))
    print(text)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
