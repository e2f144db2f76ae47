"""The Python API of a packed model (stage 8's archive): load once, transcribe many.

    from echo_plugin.inference.transcriber import load
    model = load("exp/asr_train_asr_echo/train_asr_echo.zip")
    model.transcribe("a.wav")                 # -> Hypothesis(text='TWO SIX', score=-1.3, tokens=[...])
    model.transcribe(samples, fs=8000)        # a float array of samples
    model.transcribe("a.wav", nbest=3)        # -> list of Hypothesis

Decoding uses the decoding config packed with the model (``decode.yaml`` beside its
training config; stage 8 packs the recipe's), else beam 8 and CTC weight 0.3;
``overrides`` change single options. Weights load strictly (a renamed parameter is
an error naming the key); audio at another rate is resampled to the model's;
ESPnet's import-time prints and deprecation warnings are kept out of the output.
"""
from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml

from echo_plugin.inference.audio import read_audio

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
    """The sample rate the training config's frontend expects."""
    config = yaml.safe_load(Path(train_config).read_text(encoding="utf-8")) or {}
    return int((config.get("frontend_conf") or {}).get("fs", 16000))


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

    def __init__(self, speech2text, train_config: Path, options: dict) -> None:
        self.speech2text = speech2text
        self.train_config = train_config
        self.options = options
        self.fs = model_rate(train_config)

    @property
    def model(self):
        return self.speech2text.asr_model

    def read(self, path: str | Path, utt_id: str | None = None) -> np.ndarray:
        """Samples of an audio file at the model's rate (AudioError naming the file when unusable)."""
        return read_audio(path, self.fs, utt_id=utt_id)

    def transcribe(self, audio: str | Path | np.ndarray, fs: int | None = None, nbest: int = 1,
                   spk_stats: np.ndarray | None = None) -> Hypothesis | list[Hypothesis]:
        """audio: a file path, or samples (N,) at ``fs`` Hz (the model's rate when None) ->
        the best Hypothesis, or the ``nbest`` best as a list when nbest > 1."""
        if isinstance(audio, (str, Path)):
            speech = self.read(audio)
        else:
            speech = np.asarray(audio, dtype=np.float32)
            if fs is not None and fs != self.fs:
                import torch
                import torchaudio

                speech = torchaudio.functional.resample(torch.from_numpy(speech), fs, self.fs).numpy()
        with quiet():
            results = self.speech2text(speech, spk_stats=spk_stats)
        hyps = [Hypothesis(text, float(hyp.score) if hyp is not None else None, list(tokens))
                for text, tokens, _, hyp in results[:nbest]]
        return hyps if nbest > 1 else hyps[0]


def load(archive: str | Path, overrides: dict | None = None, device: str = "cpu",
         cache_dir: str | Path | None = None, nbest: int = 1) -> Transcriber:
    """Unpack ``archive`` (ESPnet's packer format) into ``cache_dir`` (default: a temporary dir kept for
    the process) and build a strict Speech2Text with the packed decoding options."""
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"no model archive at {archive}")
    with quiet():
        from echo_plugin import register
        from echo_plugin.inference import strict_load

        register()
        strict_load.install()
        from espnet2.main_funcs.pack_funcs import unpack

        from echo_plugin.inference.speaker_speech2text import EchoSpeech2Text

        target = Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp(prefix="echo_model_"))
        files = unpack(archive, target)
        train_config = Path(files["asr_train_config"])
        options = decoding_options(train_config, overrides)
        options["nbest"] = max(nbest, int(options.get("nbest", 1)))
        speech2text = EchoSpeech2Text(**files, device=device, **options)
    return Transcriber(speech2text, train_config, options)
