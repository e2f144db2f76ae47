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
An archive that cannot be used (not an archive, no packed config, weights that do not
match the config, a decoding option ESPnet does not know) is a :class:`ModelError`
on one line naming it.

Without ``cache_dir`` the archive is unpacked into a temporary ``echo_model_*`` dir that
lives as long as the Transcriber (its files, a sentencepiece model among them, are read
while decoding): it is removed when the Transcriber is garbage-collected or, at the
latest, when the process exits.

A recording longer than ``chunking.max_seconds`` is split at its pauses and the chunk
transcripts are joined (:mod:`echo_plugin.inference.chunking`). The limit: ``chunking``
when given (None: never split), else ``max_chunk_seconds`` of the decoding options (the
packed ``decode.yaml`` or ``overrides``; 0: never split; taken out before ESPnet's
Speech2Text sees the options), else 20 s. A clip too short for the model's front end
(its STFT window reaching past both ends) gets the error of a clip too short for the
encoder instead of the front end's exception (:meth:`Transcriber.too_short`);
``transcribe_batch`` encodes several waveforms in one encoder call where padding
leaves each one's output unchanged (:mod:`echo_plugin.inference.batch_encode`) and
runs ESPnet's beam search on each; many files: :mod:`echo_plugin.inference.batch_transcribe`.
"""
from __future__ import annotations

import contextlib
import io
import pickle
import shutil
import sys
import tarfile
import tempfile
import warnings
import weakref
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import yaml

from echo_plugin.asr.audio_output_cache import caches_off
from echo_plugin.inference.audio import AudioError, one_line, read_audio
from echo_plugin.inference.batch_transcribe import Recording, transcribe_recordings
from echo_plugin.inference.chunking import DEFAULT_CHUNKING, ChunkingConfig
from echo_plugin.inference.packed_paths import point_at_packed_files
from echo_plugin.inference.strict_load import WeightMismatchError

DEFAULT_DECODING = {"beam_size": 8, "ctc_weight": 0.3, "penalty": 0.0, "maxlenratio": 0.0, "minlenratio": 0.0}
PACKED_DECODING = "decode.yaml"  # the decoding config stage 8 packs beside the training config
CHUNK_OPTION = "max_chunk_seconds"  # a decoding option of transcribe's, not ESPnet's: the chunk limit
FROM_OPTIONS = "from decoding options"  # load's default chunking: CHUNK_OPTION when set, else DEFAULT_CHUNKING
PROBE_SECONDS = 0.1  # clips shorter than this are tried on the front end alone before decoding (a
# front end's analysis window is shorter: whisper 25 ms, ESPnet's default 32 ms), longer ones cost nothing more
# what a damaged archive raises while ESPnet's unpack reads it (RuntimeError: no meta.yaml; AssertionError,
# KeyError: a meta.yaml without its tables)
UNPACK_ERRORS = (zipfile.BadZipFile, tarfile.TarError, zlib.error, EOFError, OSError, RuntimeError, KeyError,
                 AssertionError, yaml.YAMLError)


class ModelError(ValueError):
    """A model archive that cannot be used, with the archive (or the option) named, on one line."""


class PackedWeightsError(ModelError, WeightMismatchError):
    """Packed weights that do not match the packed config: a ModelError, and still the strict loader's
    WeightMismatchError for callers that catch that."""


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
    except ModelError:  # explained in its message: the chatter would only bury it
        raise
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
    """DEFAULT_DECODING, updated by the packed decode.yaml beside ``train_config``, then by ``overrides``
    (transcribe's own CHUNK_OPTION included)."""
    options = dict(DEFAULT_DECODING)
    packed = train_config.with_name(PACKED_DECODING)
    if packed.is_file():
        loaded = yaml.safe_load(packed.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ModelError(f"the packed {PACKED_DECODING} holds a {type(loaded).__name__}, not options")
        options.update(loaded)
    options.update(overrides or {})
    return options


def chunking_option(options: dict) -> ChunkingConfig | None:
    """Takes CHUNK_OPTION out of ``options`` -> its ChunkingConfig (None for 0: never split); DEFAULT_CHUNKING
    when it is not set."""
    if CHUNK_OPTION not in options:
        return DEFAULT_CHUNKING
    value = options.pop(CHUNK_OPTION)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ModelError(f"decoding option {CHUNK_OPTION}: a number of seconds >= 0 (0: never split), got {value!r}")
    return ChunkingConfig.for_limit(float(value)) if value > 0 else None


def speech2text_options() -> set[str]:
    """The keyword options ESPnet's Speech2Text (and so EchoSpeech2Text) takes."""
    import inspect

    from espnet2.bin.asr_inference import Speech2Text

    return set(inspect.signature(Speech2Text.__init__).parameters) - {"self"}


class Transcriber:
    """A packed model ready to decode (see the module docstring)."""

    def __init__(self, speech2text, train_config: Path, options: dict,
                 chunking: ChunkingConfig | None = DEFAULT_CHUNKING) -> None:
        self.speech2text = speech2text
        self.train_config = train_config
        self.options = options  # what ESPnet's Speech2Text was built with
        self.chunking = chunking
        self.fs = model_rate(train_config)

    def too_short(self, speech: np.ndarray) -> bool:
        """Whether the model's front end refuses samples (N,) at the model's rate: raises on them (an STFT
        reflect-padding its window past both ends of a few samples) or gives no frame. Only clips under
        PROBE_SECONDS are tried (the front end alone, on the clip alone); a failure on a longer clip is no
        matter of length and is left to raise where it happens."""
        import torch

        frontend = getattr(self.model, "frontend", None)
        if frontend is None or len(speech) >= PROBE_SECONDS * self.fs:
            return False  # no front end: the encoder reads the samples and says itself when it has no frame
        s2t = self.speech2text
        wave = torch.as_tensor(np.asarray(speech), dtype=getattr(torch, s2t.dtype), device=s2t.device)[None]
        try:
            with quiet(), torch.no_grad():
                _, lengths = frontend(wave, torch.tensor([wave.shape[1]], device=wave.device))
        except (RuntimeError, ValueError):
            return True
        return int(lengths[0]) == 0

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
        its ``nbest`` best Hypotheses, None when it is too short for the front end (``too_short``: it is not
        encoded) or the encoder. One encoder call for the others when ``batch_exact``, else one per waveform;
        ESPnet's beam search on each encoder output."""
        import torch

        from echo_plugin.inference.batch_encode import encode_batch

        s2t = self.speech2text
        stats = list(spk_stats) if spk_stats is not None else [None] * len(speeches)
        waves = [torch.as_tensor(np.asarray(x), dtype=getattr(torch, s2t.dtype), device=s2t.device) for x in speeches]
        usable = [i for i, x in enumerate(speeches) if not self.too_short(np.asarray(x))]
        groups = ([usable] if usable else []) if self.batch_exact else [[i] for i in usable]
        out: list[list[Hypothesis] | None] = [None] * len(waves)
        with quiet(), torch.no_grad():
            for group in groups:
                encoded = encode_batch(self.model, [waves[i] for i in group], [stats[i] for i in group])
                for i, enc in zip(group, encoded):
                    if enc is not None:
                        out[i] = [Hypothesis(text, float(hyp.score) if hyp is not None else None, list(tokens))
                                  for text, tokens, _, hyp in s2t._decode_single_sample(enc)[:nbest]]
        return out


def unpack_archive(archive: Path, target: Path) -> dict[str, str]:
    """ESPnet's unpack of ``archive`` into ``target`` -> its files by role (asr_train_config, asr_model_file),
    the training config pointed at the unpacked files; ModelError naming the archive when it is damaged."""
    from espnet2.main_funcs.pack_funcs import unpack

    try:
        files = {key: unpacked_copy(Path(value), target) for key, value in unpack(archive, target).items()}
        train_config = Path(files["asr_train_config"])
        point_at_packed_files(train_config, target)  # ESPnet's unpack misses files packed through links
    except UNPACK_ERRORS as error:
        raise ModelError(f"cannot unpack model archive {archive}: {one_line(error)}") from None
    return files


def unpacked_copy(path: Path, target: Path) -> str:
    """The unpacked copy under ``target`` of a file ESPnet's unpack names. An archive packed with absolute
    paths (packed outside the current directory) stores ``/a/b/model.pth`` as the member ``a/b/model.pth``,
    and ESPnet's unpack names ``target / '/a/b/model.pth'``, which is the packing machine's own file: the
    model would read that when it exists, and the config rewriting would write into it."""
    if path.is_absolute() and not path.is_relative_to(target):
        inside = target / path.relative_to(path.anchor)
        if inside.is_file():
            return str(inside)
    return str(path)


def load(archive: str | Path, overrides: dict | None = None, device: str = "cpu",
         cache_dir: str | Path | None = None, nbest: int = 1,
         chunking: ChunkingConfig | None | str = FROM_OPTIONS) -> Transcriber:
    """Unpack ``archive`` (ESPnet's packer format) into ``cache_dir`` (default: a temporary dir removed with
    the Transcriber, see the module docstring) and build a strict Speech2Text with the packed decoding options
    and ``overrides``; ``chunking`` None decodes every recording whole, FROM_OPTIONS takes the options'
    ``max_chunk_seconds`` (else 20 s). ModelError (one line) for an archive or options that cannot be used."""
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"no model archive at {archive}")
    temporary = cache_dir is None
    target = Path(tempfile.mkdtemp(prefix="echo_model_")) if temporary else Path(cache_dir)
    try:
        with quiet():
            from echo_plugin import register

            register()
            from echo_plugin.inference.speaker_speech2text import EchoSpeech2Text

            files = unpack_archive(archive, target)
            train_config = Path(files["asr_train_config"])
            options = decoding_options(train_config, overrides)
            packed_chunking = chunking_option(options)
            unknown = sorted(set(options) - speech2text_options())
            if unknown:
                given = sorted(set(unknown) & set(overrides or {}))
                where = "given as overrides (transcribe: --decode_config)" if given else \
                    f"packed in {PACKED_DECODING} of model archive {archive}"
                raise ModelError(f"decoding option(s) {', '.join(given or unknown)} {where}: not options of "
                                 f"ESPnet's Speech2Text, nor {CHUNK_OPTION}")
            options["nbest"] = max(nbest, int(options.get("nbest", 1)))
            try:
                speech2text = EchoSpeech2Text(**files, device=device, **options)
            except (WeightMismatchError, pickle.UnpicklingError, EOFError) as error:
                # the weight file by its name in the archive, not by the temporary copy
                kind = PackedWeightsError if isinstance(error, WeightMismatchError) else ModelError
                raise kind(f"model archive {archive}: {one_line(error).replace(f'{target}/', '')}") from None
    except BaseException:
        if temporary:
            shutil.rmtree(target, ignore_errors=True)
        raise
    caches_off(speech2text.asr_model)  # a frozen encoder's output cache: each file is new to a deployed model
    model = Transcriber(speech2text, train_config, options, packed_chunking if chunking == FROM_OPTIONS else chunking)
    if temporary:  # removed with the Transcriber, or when the process exits (weakref.finalize runs at exit)
        weakref.finalize(model, shutil.rmtree, str(target), ignore_errors=True)
    return model
