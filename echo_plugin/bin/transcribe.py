"""Transcribe audio files with a packed Echo/ESPnet model (stage 8's zip).

    python -m echo_plugin.bin.transcribe --model exp/asr_train_asr_echo/train_asr_echo.zip a.wav b.wav
    python -m echo_plugin.bin.transcribe --model model.zip --wav_scp data/test/wav.scp

Prints ``<id> <text>`` per input (the file path is the id for plain files).
Weights load strictly; audio at another rate is resampled to the model's.

A model trained with ``normalize: speaker_mvn`` normalizes each input with
its speaker's statistics: ``--speaker pooled`` treats all inputs as one speaker
and pools their statistics (best for several recordings of one person);
``--speaker per_file`` takes each file's own; the default ``--speaker unknown``
uses the training speakers' pooled statistics.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml

from echo_plugin import register
from echo_plugin.inference import strict_load
from echo_plugin.inference.audio import read_audio

DEFAULT_DECODING = {"beam_size": 8, "ctc_weight": 0.3, "penalty": 0.0, "maxlenratio": 0.0, "minlenratio": 0.0}


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


def model_rate(train_config: str) -> int:
    with open(train_config, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    return int((config.get("frontend_conf") or {}).get("fs", 16000))


def load_speech2text(archive: Path, cache_dir: Path, decoding: dict):
    """Unpack the archive (ESPnet's packer format) and build a strict Speech2Text."""
    register()
    strict_load.install()
    from espnet2.main_funcs.pack_funcs import unpack

    from echo_plugin.inference.speaker_speech2text import EchoSpeech2Text

    files = unpack(archive, cache_dir)
    return EchoSpeech2Text(**files, device="cpu", **decoding), files["asr_train_config"]


def speaker_statistics(speech2text, audio: dict[str, np.ndarray], mode: str) -> dict[str, np.ndarray | None]:
    """id -> speaker statistics (2, D) for ``normalize: speaker_mvn`` models (None: the model's fallback)."""
    from echo_plugin.asr.normalize.speaker_mvn import SpeakerMVN
    from echo_plugin.recipe.speaker_stats import DEFAULT_VAD_RANGE, accumulate

    model = speech2text.asr_model
    if mode == "unknown" or not isinstance(model.normalize, SpeakerMVN):
        return {utt: None for utt in audio}
    speaker = (lambda utt: "all") if mode == "pooled" else (lambda utt: utt)  # noqa: E731
    stats = accumulate(model.frontend, ((utt, speaker(utt), x) for utt, x in audio.items()), DEFAULT_VAD_RANGE)
    return {utt: stats.speakers[speaker(utt)].mean_std() for utt in audio}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="packed model archive (.zip/.tar.gz)")
    parser.add_argument("--decode_config", type=Path, default=None, help="YAML of decoding options")
    parser.add_argument("--wav_scp", type=Path, default=None)
    parser.add_argument("--cache_dir", type=Path, default=None, help="where to unpack (default: temporary)")
    parser.add_argument("--speaker", choices=("unknown", "pooled", "per_file"), default="unknown",
                        help="speaker statistics for speaker_mvn models (see above)")
    parser.add_argument("audio", nargs="*")
    args = parser.parse_args(argv)
    if not args.audio and args.wav_scp is None:
        parser.error("give audio files and/or --wav_scp")
    if not args.model.is_file():
        parser.error(f"no model archive at {args.model}")
    decoding = dict(DEFAULT_DECODING)
    if args.decode_config is not None:
        decoding.update(yaml.safe_load(args.decode_config.read_text(encoding="utf-8")) or {})

    with tempfile.TemporaryDirectory() as tmp:
        speech2text, train_config = load_speech2text(args.model, args.cache_dir or Path(tmp), decoding)
        fs = model_rate(train_config)
        audio = {utt: read_audio(path, fs, utt_id=utt if utt != path else None)
                 for utt, path in inputs(args.audio, args.wav_scp)}
        stats = speaker_statistics(speech2text, audio, args.speaker)
        for utt, speech in audio.items():
            text = speech2text(speech, spk_stats=stats[utt])[0][0]
            print(f"{utt} {text}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
