"""Transcribe audio files with a packed Echo/ESPnet model (stage 8's zip).

    python -m echo_plugin.bin.transcribe --model exp/asr_train_asr_echo/train_asr_echo.zip a.wav b.wav
    python -m echo_plugin.bin.transcribe --model model.zip --wav_scp data/test/wav.scp --output jsonl

Prints ``<id> <text>`` per input (the file path is the id for plain files), or
with ``--output jsonl`` one JSON object per input: id, file, text, score (and
the n best with ``--nbest N``). Files are decoded one by one as they are read; a
file that cannot be used gets one line on stderr naming it and why, the others
are still transcribed, and the exit status is 1. Weights load strictly; audio at
another rate is resampled to the model's. Decoding options: the recipe's
decoding config packed with the model, else beam 8 and CTC weight 0.3;
``--decode_config`` overrides single options. The Python API is
``echo_plugin.inference.transcriber.load``.

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

from echo_plugin.inference.audio import AudioError
from echo_plugin.inference.transcriber import Transcriber, load


def inputs(files: list[str], wav_scp: Path | None) -> Iterator[tuple[str, str]]:
    """(id, path) pairs from plain files and/or a Kaldi wav.scp."""
    for path in files:
        yield path, path
    if wav_scp is not None:
        for number, line in enumerate(wav_scp.read_text(encoding="utf-8").splitlines(), 1):
            utt, _, path = line.strip().partition(" ")
            if not path or path.endswith("|"):
                raise SystemExit(f"{wav_scp}:{number}: expected '<utt id> <audio path>', got '{line}'")
            yield utt, path.strip()


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


def readable(
    model: Transcriber, pairs: Iterator[tuple[str, str]], failed: list[str]
) -> Iterator[tuple[str, str, np.ndarray]]:
    """(id, path, samples) of each input that reads; one stderr line for each that does not."""
    for utt, path in pairs:
        try:
            yield utt, path, model.read(path, utt_id=utt if utt != path else None)
        except AudioError as error:
            print(f"transcribe: error: {error}", file=sys.stderr, flush=True)
            failed.append(utt)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="packed model archive (.zip/.tar.gz)")
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
    parser.add_argument("--nbest", type=int, default=1, help="hypotheses per input (jsonl shows them all)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("audio", nargs="*")
    args = parser.parse_args(argv)
    if not args.audio and args.wav_scp is None:
        parser.error("give audio files and/or --wav_scp")
    if not args.model.is_file():
        parser.error(f"no model archive at {args.model}")
    overrides = None
    if args.decode_config is not None:
        overrides = yaml.safe_load(args.decode_config.read_text(encoding="utf-8")) or {}
    model = load(args.model, overrides, device=args.device, cache_dir=args.cache_dir, nbest=args.nbest)

    failed: list[str] = []
    items = readable(model, inputs(args.audio, args.wav_scp), failed)
    stats: dict[str, np.ndarray | None] = {}
    if args.speaker == "pooled":  # one speaker's statistics need every file first
        held = list(items)
        stats = speaker_statistics(model, {utt: x for utt, _, x in held}, args.speaker, args.prior_frames)
        items = iter(held)
    for utt, path, speech in items:
        if args.speaker == "per_file":  # each file's own, as it comes
            stats = speaker_statistics(model, {utt: speech}, "per_file", args.prior_frames)
        hyps = model.transcribe(speech, nbest=args.nbest, spk_stats=stats.get(utt))
        hyps = hyps if isinstance(hyps, list) else [hyps]
        if args.output == "jsonl":
            record = {"id": utt, "file": path, "text": hyps[0].text, "score": hyps[0].score}
            if args.nbest > 1:
                record["nbest"] = [{"text": h.text, "score": h.score} for h in hyps]
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            print(f"{utt} {hyps[0].text}", flush=True)
    if failed:
        print(f"transcribe: {len(failed)} input(s) failed: {' '.join(failed[:20])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
