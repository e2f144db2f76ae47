"""Transcribe audio files with a packed Echo/ESPnet model (stage 8's zip).

    python -m echo_plugin.bin.transcribe --model exp/asr_train_asr_echo/train_asr_echo.zip a.wav b.wav
    python -m echo_plugin.bin.transcribe --model model.zip --wav_scp data/test/wav.scp --output jsonl

Prints ``<id> <text>`` per input, in input order (the file path is the id for
plain files), or with ``--output jsonl`` one JSON object per input: id, file,
seconds, text, score (and the n best with ``--nbest N``; ``chunks`` with each
chunk's start, end, text and score for a split recording). A file that cannot be
used (missing, unreadable, empty, truncated, too short for the front end or the
encoder) gets one line on stderr naming it and why, the others are still
transcribed, and the exit status is 1. Bad arguments stop the run before any
file, each with one line naming the file: a missing or malformed
``--decode_config``, a ``--wav_scp`` that is missing, not UTF-8 or has a line
without a path, a damaged model archive, a packed model whose weights do not
match its config (the keys named). Weights load strictly; audio at another rate
is resampled to the model's. Decoding options: the recipe's decoding config
packed with the model, else beam 8 and CTC weight 0.3; ``--decode_config``
overrides single options.
The Python API is ``echo_plugin.inference.transcriber.load``.

An exported bundle (``python -m echo_plugin.bin.export_onnx --model model.zip --out_dir exported/``, INT8
beside float32) is taken as ``--model exported/`` (``--int8`` for its INT8 graph): the CTC path in
onnxruntime, greedy, no PyTorch model (``echo_plugin.inference.onnx_transcriber``); decoding options,
n-best and batching do not apply to it and are refused.

Many files: ``--batch_size N`` encodes N files (or chunks) at once, grouped by
length within windows of 4N files; ESPnet's beam search still runs on each one,
and the output equals batch 1 (the default: each file decoded as read, exactly
ESPnet's path) up to float rounding of the encoder (models whose encoder output
padding would change are encoded one by one: ``echo_plugin.inference.batch_encode``).
Long recordings: longer than the chunk limit they are split at pauses (an energy
VAD against the file's own noise floor; fixed chunks with 0.5 s overlap where
there is no pause) and the chunk transcripts are joined in order. The limit:
``--max_chunk_seconds`` (0: never split), else ``max_chunk_seconds`` in the
decoding options (``--decode_config``, or the packed decoding config), else 20 s.
A model trained on short clips wants a short limit: the FSDD default (trained on
1-5 s clips) on 30-60 s recordings of dev speakers' connected digits makes 83.4%
WER at 20 s, 24.7% at 8 s and 4.6% at 4 s, as much as each utterance decoded
alone (bench/CHUNKING.md): give FSDD models ``--max_chunk_seconds 4``.
A progress bar counts files on stderr when stderr is a terminal (``--progress`` /
``--no-progress`` force it on / off; never for one file); the error lines and
transcripts are written around it.

A model trained with ``normalize: speaker_mvn`` normalizes each input with
its speaker's statistics: ``--speaker pooled`` treats all inputs as one speaker
and pools their statistics (best for several recordings of one person); the
default ``--speaker per_file`` takes each file's own speech-frame statistics
(one file of an unknown speaker); ``--speaker unknown`` uses the training
speakers' pooled statistics (far worse on a new speaker: 58.6% against 25.2%
WER for per_file on 50 connected-digit files of an unseen FSDD speaker). Models
with per-utterance normalization (``speech_mvn``, ``global_mvn``) need none of this.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml

from echo_plugin.inference.audio import AudioError, one_line
from echo_plugin.inference.batch_transcribe import Recording, Result, transcribe_recordings
from echo_plugin.inference.chunking import ChunkingConfig
from echo_plugin.inference.onnx_transcriber import is_bundle
from echo_plugin.inference.transcriber import FROM_OPTIONS, ModelError, Transcriber, load


class InputError(ValueError):
    """An argument file (``--wav_scp``, ``--decode_config``) that cannot be used, on one line naming it."""


def wav_scp_lines(wav_scp: Path) -> list[str]:
    """The lines of a wav.scp; InputError naming it when it is missing, unreadable or not UTF-8 (the first
    bad line named, and how many there are)."""
    from echo_plugin.recipe.data_dir import DataDirError, read_text_lines

    if not wav_scp.is_file():
        raise InputError(f"--wav_scp {wav_scp}: no such file")
    try:
        return read_text_lines(wav_scp)
    except DataDirError as error:
        more = f" (and {len(error.faults) - 1} more line(s))" if len(error.faults) > 1 else ""
        raise InputError(f"--wav_scp {error.faults[0]}{more}") from None
    except OSError as error:
        raise InputError(f"--wav_scp {wav_scp}: cannot read it: {one_line(error)}") from None


def inputs(files: list[str], wav_scp: Path | None) -> Iterator[tuple[str, str]]:
    """(id, path) pairs from plain files and/or a Kaldi wav.scp (InputError for a bad one: ``wav_scp_lines``,
    or a line that is not '<utt id> <audio path>')."""
    for path in files:
        yield path, path
    if wav_scp is not None:
        for number, line in enumerate(wav_scp_lines(wav_scp), 1):
            if not line.strip():
                continue
            utt, _, path = line.strip().partition(" ")
            if not path.strip() or path.endswith("|"):
                raise InputError(f"--wav_scp {wav_scp}:{number}: expected '<utt id> <audio path>', got '{line}'")
            yield utt, path.strip()


def decoding_overrides(path: Path) -> dict:
    """The options of a ``--decode_config`` YAML; InputError naming it when it is missing, unreadable, not
    YAML or not a mapping."""
    try:
        options = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--decode_config {path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise InputError(f"--decode_config {path}: cannot read it: {one_line(error)}") from None
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InputError(f"--decode_config {path}: holds a {type(options).__name__}, not decoding options")
    return options


def speaker_statistics(model: Transcriber, audio: dict[str, np.ndarray], mode: str,
                       prior_frames: float = 0.0) -> dict[str, np.ndarray | None]:
    """id -> speaker statistics (2, D) for ``normalize: speaker_mvn`` models (None: the model's fallback),
    with ``prior_frames`` virtual frames of the training speakers' pooled statistics added."""
    from echo_plugin.asr.normalize.speaker_mvn import SpeakerMVN
    from echo_plugin.recipe.speaker_stats import DEFAULT_VAD_RANGE, accumulate

    normalize = model.model.normalize
    if mode == "unknown" or not isinstance(normalize, SpeakerMVN):
        return {utt: None for utt in audio}
    speaker = (lambda utt: "all") if mode == "pooled" else (lambda utt: utt)  # noqa: E731
    stats = accumulate(model.model.frontend, ((utt, speaker(utt), x) for utt, x in audio.items()), DEFAULT_VAD_RANGE)
    if prior_frames > 0 and normalize.fallback_mean is not None:
        prior = (normalize.fallback_mean.numpy(), normalize.fallback_std.numpy(), prior_frames)
        stats.speakers = {spk: s.with_prior(*prior) for spk, s in stats.speakers.items()}
    return {utt: stats.speakers[speaker(utt)].mean_std() for utt in audio}


class Console:
    """stdout lines (transcripts) and stderr lines (errors), written around a progress bar of files on stderr
    when there is one (tqdm clears and redraws it)."""

    def __init__(self, total: int, progress: bool | None) -> None:
        show = total > 1 and (progress if progress is not None else sys.stderr.isatty())
        self.bar = None
        if show:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="file", file=sys.stderr, dynamic_ncols=True)

    def out(self, line: str) -> None:
        self.write(line, sys.stdout)

    def err(self, line: str) -> None:
        self.write(line, sys.stderr)

    def write(self, line: str, stream) -> None:
        if self.bar is not None:
            self.bar.write(line, file=stream)
            stream.flush()
        else:
            print(line, file=stream, flush=True)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def readable(
    model: Transcriber, pairs: Iterator[tuple[str, str]], failed: list[str], console: Console
) -> Iterator[tuple[str, str, np.ndarray]]:
    """(id, path, samples) of each input that reads; one stderr line for each that does not."""
    for utt, path in pairs:
        try:
            yield utt, path, model.read(path, utt_id=utt if utt != path else None)
        except AudioError as error:
            console.err(f"transcribe: error: {error}")
            console.done()
            failed.append(utt)


def recordings(model: Transcriber, items: Iterator[tuple[str, str, np.ndarray]], mode: str,
               prior_frames: float) -> Iterator[Recording]:
    """Readable inputs -> Recordings with their speaker statistics: each file's own as it comes (per_file),
    all files' pooled once every file is read (pooled), or none (unknown). A file too short for the front
    end has none (and adds none to the pool): decoding then refuses it with one line."""
    if mode == "pooled":  # one speaker's statistics need every file first
        held = list(items)
        usable = {utt: x for utt, _, x in held if not model.too_short(x)}
        stats = speaker_statistics(model, usable, mode, prior_frames) if usable else {}
        for utt, path, speech in held:
            yield Recording(utt, path, speech, stats.get(utt))
        return
    for utt, path, speech in items:
        stats = {} if model.too_short(speech) else speaker_statistics(model, {utt: speech}, mode, prior_frames)
        yield Recording(utt, path, speech, stats.get(utt))


def hypotheses_json(hyps) -> list[dict]:
    return [{"text": h.text, "score": h.score} for h in hyps]


def output_line(result: Result, output: str, nbest: int, fs: int) -> str:
    """A decoded Result -> its text or JSON line."""
    best = result.hyps[0]
    if output != "jsonl":
        return f"{result.utt} {best.text}"
    fields = {"score": best.score}
    if nbest > 1:
        fields["nbest"] = hypotheses_json(result.hyps)
    if result.chunks:
        fields["chunks"] = [
            {"start": round(c.chunk.start / fs, 3), "end": round(c.chunk.end / fs, 3), "text": c.hyps[0].text,
             "score": c.hyps[0].score, **({"nbest": hypotheses_json(c.hyps)} if nbest > 1 else {})}
            for c in result.chunks]
    return json_line(result.utt, result.path, result.seconds, best.text, fields)


def json_line(utt: str, path: str, seconds: float, text: str, fields: dict) -> str:
    """One input's ``--output jsonl`` line: id, file, seconds, text, then ``fields`` (score, nbest, chunks)."""
    record = {"id": utt, "file": path, "seconds": round(seconds, 3), "text": text, **fields}
    return json.dumps(record, ensure_ascii=False)


def error_line(result: Result) -> str:
    """A Result that could not be decoded -> its stderr line, naming the utterance (wav.scp) and file."""
    where = f"utterance '{result.utt}': " if result.utt != result.path else ""
    return f"transcribe: error: {where}too short audio file {result.path}: {result.error}"


def exit_status(failed: list[str]) -> int:
    """1 with a closing stderr line naming the inputs that failed (the first 20), else 0."""
    if failed:
        print(f"transcribe: {len(failed)} input(s) failed: {' '.join(failed[:20])}", file=sys.stderr)
        return 1
    return 0


def fail(message: str) -> int:
    """One stderr line for a bad argument or model -> exit status 1."""
    print(f"transcribe: error: {message}", file=sys.stderr)
    return 1


def transcribe_exported(args: argparse.Namespace, chunking: ChunkingConfig | None) -> int:
    """``--model`` an exported bundle: each input read, decoded greedily by onnxruntime and printed in order;
    one stderr line for each that cannot be read or decoded."""
    from echo_plugin.export.onnx_ctc import ExportError
    from echo_plugin.inference.onnx_transcriber import DecodeError, OnnxTranscriber

    try:
        model = OnnxTranscriber(args.model, int8=args.int8, chunking=chunking)
    except (ExportError, ImportError) as error:  # a TorchScript or float-only bundle, no onnxruntime
        print(f"transcribe: error: {error}", file=sys.stderr)
        return 1
    try:
        pairs = list(inputs(args.audio, args.wav_scp))
    except InputError as error:
        return fail(str(error))
    console = Console(len(pairs), args.progress)
    failed: list[str] = []
    try:
        for utt, path in pairs:
            try:
                result = model.transcribe(model.read(path, utt_id=utt if utt != path else None))
            except AudioError as error:
                console.err(f"transcribe: error: {error}")
                failed.append(utt)
            except DecodeError as error:
                where = f"utterance '{utt}': " if utt != path else ""
                console.err(f"transcribe: error: {where}cannot decode {path}: {error}")
                failed.append(utt)
            else:
                if args.output != "jsonl":
                    console.out(f"{utt} {result.text}")
                else:
                    chunks = [{"start": round(a, 3), "end": round(b, 3), "text": t} for a, b, t in result.chunks]
                    console.out(json_line(utt, path, result.seconds, result.text,
                                          {"chunks": chunks} if chunks else {}))
            console.done()
    finally:
        console.close()
    return exit_status(failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True,
                        help="packed model archive (.zip/.tar.gz), or an exported bundle directory (export_onnx)")
    parser.add_argument("--int8", action="store_true", help="exported bundle: decode with its INT8 graph")
    parser.add_argument("--decode_config", type=Path, default=None,
                        help="YAML of decoding options, over the packed ones")
    parser.add_argument("--wav_scp", type=Path, default=None)
    parser.add_argument("--cache_dir", type=Path, default=None, help="where to unpack (default: temporary)")
    parser.add_argument("--speaker", choices=("per_file", "pooled", "unknown"), default="per_file",
                        help="speaker statistics for speaker_mvn models (see above)")
    parser.add_argument("--prior_frames", type=float, default=0.0,
                        help="speaker_mvn models: add this many frames of the training speakers' pooled statistics "
                             "to the file's (per_file) or speaker's (pooled) own (default 0)")
    parser.add_argument("--output", choices=("text", "jsonl"), default="text")
    parser.add_argument("--nbest", type=int, default=1,
                        help="hypotheses per input, at least 1 (jsonl shows them all)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch_size", type=int, default=1,
                        help="files (or chunks) encoded together (default 1: each file as it is read)")
    parser.add_argument("--max_chunk_seconds", type=float, default=None,
                        help="split longer recordings at pauses into chunks of at most this (0: never split; "
                             "default: max_chunk_seconds of the decoding options, else 20)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="a progress bar on stderr (default: when stderr is a terminal; never for one file)")
    parser.add_argument("audio", nargs="*")
    args = parser.parse_args(argv)
    if not args.audio and args.wav_scp is None:
        parser.error("give audio files and/or --wav_scp")
    if args.batch_size < 1:
        parser.error(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.nbest < 1:
        parser.error(f"--nbest must be at least 1, got {args.nbest}")
    if args.max_chunk_seconds is not None and args.max_chunk_seconds < 0:
        parser.error(f"--max_chunk_seconds must be 0 (never split) or more, got {args.max_chunk_seconds}")
    chunking: ChunkingConfig | None | str = FROM_OPTIONS  # the decoding options' limit, else 20 s
    if args.max_chunk_seconds is not None:
        chunking = ChunkingConfig.for_limit(args.max_chunk_seconds) if args.max_chunk_seconds > 0 else None
    if is_bundle(args.model):
        used = {"--decode_config": args.decode_config is not None, "--nbest": args.nbest != 1,
                "--batch_size": args.batch_size != 1, "--device": args.device != "cpu",
                "--speaker": args.speaker != "per_file", "--prior_frames": args.prior_frames != 0.0,
                "--cache_dir": args.cache_dir is not None}  # the graph holds its normalization (export_onnx)
        given = [flag for flag, on in used.items() if on]
        if given:
            parser.error(f"{args.model} is an exported bundle (greedy CTC in onnxruntime on the CPU): "
                         f"{', '.join(given)} do(es) not apply")
        return transcribe_exported(args, ChunkingConfig() if chunking == FROM_OPTIONS else chunking)
    if args.int8:
        parser.error("--int8 is for an exported bundle; for a packed model use a decoding config with "
                     "quantize_asr_model: true (conf/decode_asr_ctc08_int8.yaml)")
    if not args.model.is_file():
        parser.error(f"no model archive at {args.model}")
    try:  # the arguments' files first: a bad one stops the run before the model is loaded
        pairs = list(inputs(args.audio, args.wav_scp))
        overrides = decoding_overrides(args.decode_config) if args.decode_config is not None else None
        model = load(args.model, overrides, device=args.device, cache_dir=args.cache_dir, nbest=args.nbest,
                     chunking=chunking)
    except (InputError, ModelError) as error:
        return fail(str(error))

    console = Console(len(pairs), args.progress)
    failed: list[str] = []
    items = recordings(model, readable(model, iter(pairs), failed, console), args.speaker, args.prior_frames)
    try:
        for result in transcribe_recordings(model, items, args.batch_size, model.chunking, args.nbest):
            if result.error is not None:
                console.err(error_line(result))
                failed.append(result.utt)
            else:
                console.out(output_line(result, args.output, args.nbest, model.fs))
            console.done()
    finally:
        console.close()
    return exit_status(failed)


if __name__ == "__main__":
    sys.exit(main())
