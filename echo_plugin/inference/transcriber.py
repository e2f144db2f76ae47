"""The Python API of a packed model (stage 8's archive): load once, transcribe many.

    from echo_plugin.inference.transcriber import load
    model = load("exp/asr_train_asr_echo/train_asr_echo.zip")
    model.transcribe("a.wav")                 # -> Hypothesis(text='TWO SIX', score=-1.3, tokens=[...])
    model.transcribe(samples, fs=8000)        # a float array of samples
    model.transcribe("a.wav", nbest=3)        # -> list of Hypothesis
    model.transcribe_batch([x1, x2, x3])      # -> per waveform its list of Hypothesis; one encoder call

Decoding uses the decoding config packed with the model (``decode.yaml`` beside its
training config; stage 8 packs the recipe's), else beam 8 and CTC weight 0.3;
``overrides`` change single options. Weights load strictly (a renamed parameter is
an error naming the key); audio at another rate is resampled to the model's;
ESPnet's import-time prints and deprecation warnings are kept out of the output.

A recording longer than ``chunking.max_seconds`` (20 s by default) is split at its
pauses and the chunk transcripts are joined (:mod:`echo_plugin.inference.chunking`);
``transcribe_batch`` encodes several waveforms in one encoder call where padding
leaves each one's output unchanged (:mod:`echo_plugin.inference.batch_encode`) and
runs ESPnet's beam search on each; many files: :mod:`echo_plugin.inference.batch_transcribe`.
"""
from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import yaml

from echo_plugin.asr.audio_output_cache import caches_off
from echo_plugin.inference.audio import AudioError, read_audio
from echo_plugin.inference.batch_transcribe import Recording, transcribe_recordings
from echo_plugin.inference.chunking import DEFAULT_CHUNKING, ChunkingConfig
from echo_plugin.inference.packed_paths import point_at_packed_files

DEFAULT_DECODING = {"beam_size": 8, "ctc_weight": 0.3, "penalty": 0.0, "maxlenratio": 0.0, "minlenratio": 0.0}
PACKED_DECODING = "decode.yaml"  # the decoding config stage 8 packs beside the training config


@dataclass
class Hypothesis:
    """One decoding result: the text, its beam-search score and its tokens."""

    text: str
    score: float | None = None
    tokens: list[str] = field(default_factory=list)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Library chatter off: ESPnet prints at import (flash attention, nltk downloads) and warns about
    deprecations. What was printed is shown on stderr after all when the block fails."""
    held = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(held), contextlib.redirect_stderr(held):
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    except BaseException:
        sys.stderr.write(held.getvalue())
        raise


def model_rate(train_config: str | Path) -> int:
    """The sample rate the training config's frontend expects; without a frontend (``frontend: null``, an
    encoder reading the audio: ``whisper_style_audio``), the encoder's ``fs``; 16 kHz when not set."""
    config = yaml.safe_load(Path(train_config).read_text(encoding="utf-8")) or {}
    reader = "encoder_conf" if "frontend" in config and config["frontend"] is None else "frontend_conf"
    return int((config.get(reader) or {}).get("fs", 16000))


def decoding_options(train_config: Path, overrides: dict | None) -> dict:
    """DEFAULT_DECODING, updated by the packed decode.yaml beside ``train_config``, then by ``overrides``."""
    options = dict(DEFAULT_DECODING)
    packed = train_config.with_name(PACKED_DECODING)
    if packed.is_file():
        options.update(yaml.safe_load(packed.read_text(encoding="utf-8")) or {})
    options.update(overrides or {})
    return options


class Transcriber:
    """A packed model ready to decode (see the module docstring)."""

    def __init__(self, speech2text, train_config: Path, options: dict,
                 chunking: ChunkingConfig | None = DEFAULT_CHUNKING) -> None:
        self.speech2text = speech2text
        self.train_config = train_config
        self.options = options
        self.chunking = chunking
        self.fs = model_rate(train_config)

    @property
    def model(self):
        return self.speech2text.asr_model

    @property
    def batch_exact(self) -> bool:
        """Whether several waveforms share one encoder call (padding leaves each one's output unchanged)."""
        from echo_plugin.inference.batch_encode import batch_exact

        return batch_exact(self.model)

    def read(self, path: str | Path, utt_id: str | None = None) -> np.ndarray:
        """Samples of an audio file at the model's rate (AudioError naming the file when unusable)."""
        return read_audio(path, self.fs, utt_id=utt_id)

    def transcribe(self, audio: str | Path | np.ndarray, fs: int | None = None, nbest: int = 1,
                   spk_stats: np.ndarray | None = None, batch_size: int = 1) -> Hypothesis | list[Hypothesis]:
        """audio: a file path, or samples (N,) at ``fs`` Hz (the model's rate when None) ->
        the best Hypothesis, or the ``nbest`` best as a list when nbest > 1 (a recording split into
        chunks: the chunks' best joined, alone). ``batch_size``: chunks encoded together."""
        path = ""
        if isinstance(audio, (str, Path)):
            path, speech = str(audio), self.read(audio)
        else:
            speech = np.asarray(audio, dtype=np.float32)
            if fs is not None and fs != self.fs:
                import torch
                import torchaudio

                speech = torchaudio.functional.resample(torch.from_numpy(speech), fs, self.fs).numpy()
        result = next(transcribe_recordings(self, [Recording("", path, speech, spk_stats)], batch_size,
                                            self.chunking, nbest))
        if result.error is not None:
            raise AudioError(f"too short audio file {path}: {result.error}" if path
                             else f"too short audio: {result.error}")
        return result.hyps if nbest > 1 else result.hyps[0]

    def transcribe_batch(self, speeches: Sequence[np.ndarray], spk_stats: Sequence[np.ndarray | None] | None = None,
                         nbest: int = 1) -> list[list[Hypothesis] | None]:
        """B waveforms (S_i,) at the model's rate and their speaker statistics (2, D) or None -> per waveform
        its ``nbest`` best Hypotheses, None when it is too short for the encoder. One encoder call for all
        when ``batch_exact``, else one per waveform; ESPnet's beam search on each encoder output."""
        import torch

        from echo_plugin.inference.batch_encode import encode_batch

        s2t = self.speech2text
        stats = list(spk_stats) if spk_stats is not None else [None] * len(speeches)
        waves = [torch.as_tensor(np.asarray(x), dtype=getattr(torch, s2t.dtype), device=s2t.device) for x in speeches]
        groups = [list(range(len(waves)))] if self.batch_exact else [[i] for i in range(len(waves))]
        out: list[list[Hypothesis] | None] = [None] * len(waves)
        with quiet(), torch.no_grad():
            for group in groups:
                encoded = encode_batch(self.model, [waves[i] for i in group], [stats[i] for i in group])
                for i, enc in zip(group, encoded):
                    if enc is not None:
                        out[i] = [Hypothesis(text, float(hyp.score) if hyp is not None else None, list(tokens))
                                  for text, tokens, _, hyp in s2t._decode_single_sample(enc)[:nbest]]
        return out


def load(archive: str | Path, overrides: dict | None = None, device: str = "cpu",
         cache_dir: str | Path | None = None, nbest: int = 1,
         chunking: ChunkingConfig | None = DEFAULT_CHUNKING) -> Transcriber:
    """Unpack ``archive`` (ESPnet's packer format) into ``cache_dir`` (default: a temporary dir kept for
    the process) and build a strict Speech2Text with the packed decoding options; ``chunking`` None
    decodes every recording whole."""
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"no model archive at {archive}")
    with quiet():
        from echo_plugin import register

        register()
        from espnet2.main_funcs.pack_funcs import unpack

        from echo_plugin.inference.speaker_speech2text import EchoSpeech2Text

        target = Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp(prefix="echo_model_"))
        files = unpack(archive, target)
        train_config = Path(files["asr_train_config"])
        point_at_packed_files(train_config, target)  # ESPnet's unpack misses files packed through links
        options = decoding_options(train_config, overrides)
        options["nbest"] = max(nbest, int(options.get("nbest", 1)))
        speech2text = EchoSpeech2Text(**files, device=device, **options)
    caches_off(speech2text.asr_model)  # a frozen encoder's output cache: each file is new to a deployed model
    return Transcriber(speech2text, train_config, options, chunking)
