"""WhisperAudioEncoder: Whisper's log-mel of the audio, then the ``whisper_style`` encoder.

``encoder: whisper_style_audio`` in ESPnet YAML, with ``frontend: null`` and ``input_size: 1``,
as ESPnet's own Whisper configs (its ``OpenAIWhisperEncoder`` computes the log-mel itself, and
ESPnet's ASR model insists on no frontend for an encoder whose class name says Whisper)::

    frontend: null
    input_size: 1
    encoder: whisper_style_audio
    encoder_conf: {fs: 16000, pad_seconds: 30.0, whisper_checkpoint: ...}   # or the architecture

Per utterance, the samples (its own length, no batch padding) are resampled from ``fs`` to
16 kHz, zero-padded to ``pad_seconds`` (openai-whisper's ``pad_or_trim``: Whisper was trained on
30 s windows, silence after the speech; 0: the clip alone; longer audio is not cut) and turned
into openai-whisper's ``log_mel_spectrogram`` (log10 mel power, floored 8 below the
utterance's maximum, scaled ``(x + 4) / 4``; 100 frames per second). The frames go to
:class:`~echo_plugin.asr.encoder.whisper_style_encoder.WhisperStyleEncoder` unchanged, so with
Whisper's weights and ``pad_seconds: 30`` the output is openai-whisper's encoder output.

ESPnet's ``specaug`` would see the waveform here: leave it out (augment the audio instead).

Frozen (``freeze_weights: true``, seed 05's warm start: the pretrained encoder fixed, the decoder
fine-tuned): no parameter takes a gradient, the encoder stays in eval mode and runs without
autograd, and each utterance is encoded alone at its own length, as one file given to
``transcribe`` is. With ``cache_mb`` its output per clip is kept in memory
(:class:`~echo_plugin.asr.audio_output_cache.AudioOutputCache`, keyed by the samples), so a
training over fixed clips runs the encoder in its first epoch only::

    encoder_conf: {fs: 8000, pad_seconds: 0.0, whisper_checkpoint: whisper-base, freeze_weights: true,
                   cache_mb: 4096}
"""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import humanfriendly
import torch
from torch import Tensor, nn

from echo_plugin.asr.audio_output_cache import AudioOutputCache
from echo_plugin.asr.encoder.whisper_style_encoder import WhisperStyleEncoder

WHISPER_RATE = 16000
HOP_LENGTH = 160  # openai-whisper's: 10 ms at 16 kHz


class WhisperAudioEncoder(WhisperStyleEncoder):
    """WhisperStyleEncoder over openai-whisper's log-mel of raw audio.

    Args:
        input_size: ignored (ESPnet's ``input_size: 1`` for a model without frontend).
        n_mels: mel channels (80; 128 for large-v3).  fs: the audio's sample rate (resampled to 16 kHz).
        pad_seconds: zero-pad shorter audio to this length first (Whisper: 30.0; 0: no padding).
        freeze_weights: no gradient, eval mode, each utterance encoded alone (see the module doc).
        cache_mb: memory for the outputs of clips seen before (frozen only; 0: no cache).
        **kwargs: WhisperStyleEncoder's (``output_size``, ..., ``whisper_checkpoint``).
    """

    def __init__(self, input_size: int = 1, n_mels: int = 80, fs: Union[int, str] = WHISPER_RATE,
                 pad_seconds: float = 30.0, freeze_weights: bool = False, cache_mb: float = 0,
                 **kwargs: Any) -> None:
        super().__init__(n_mels, **kwargs)
        if pad_seconds < 0:
            raise ValueError(f"pad_seconds must be 0 or more, got {pad_seconds}")
        if cache_mb and not freeze_weights:
            raise ValueError("cache_mb needs freeze_weights: true (a trained encoder's outputs change every step)")
        self.n_mels = n_mels
        self.fs = int(humanfriendly.parse_size(fs) if isinstance(fs, str) else fs)
        self.pad_samples = int(round(pad_seconds * WHISPER_RATE))
        self.freeze_weights = freeze_weights
        if freeze_weights:
            for p in self.parameters():
                p.requires_grad_(False)
            super().train(False)
        self.cache = AudioOutputCache(int(cache_mb * 2**20))

    def train(self, mode: bool = True) -> WhisperAudioEncoder:
        """A frozen encoder stays in eval mode (no dropout into the features it caches)."""
        return super().train(mode and not self.freeze_weights)

    def log_mel(self, speech: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """speech (B, S) at ``fs``, lengths (B,) -> log-mel (B, T, n_mels) zero-padded, frames (B,)."""
        import whisper.audio

        mels = []
        for audio, n in zip(speech, lengths.tolist()):
            audio = audio[:n].float()
            if self.fs != WHISPER_RATE:
                import torchaudio.functional as AF

                audio = AF.resample(audio, self.fs, WHISPER_RATE)
            if audio.numel() < self.pad_samples:
                audio = nn.functional.pad(audio, (0, self.pad_samples - audio.numel()))
            mels.append(whisper.audio.log_mel_spectrogram(audio, self.n_mels).transpose(0, 1))  # (T, n_mels)
        frames = torch.tensor([m.size(0) for m in mels], device=speech.device)
        return nn.utils.rnn.pad_sequence(mels, batch_first=True).to(speech.dtype), frames

    def forward(self, xs_pad: Tensor, ilens: Tensor, prev_states: Optional[Tensor] = None
                ) -> Tuple[Tensor, Tensor, None]:
        """xs_pad (B, S) or (B, S, 1) audio at ``fs``, ilens (B,) samples -> (B, T', D), olens (B,), None."""
        if xs_pad.dim() == 3 and xs_pad.size(-1) == 1:
            xs_pad = xs_pad.squeeze(-1)
        if xs_pad.dim() != 2:
            raise ValueError(f"whisper_style_audio takes audio (B, S) (frontend: null), got {tuple(xs_pad.shape)}")
        if not self.freeze_weights:
            feats, frames = self.log_mel(xs_pad, ilens)
            return super().forward(feats, frames)
        with torch.no_grad():
            outs = [self._encode_one(audio[:n]) for audio, n in zip(xs_pad, ilens.tolist())]
        olens = torch.tensor([o.size(0) for o in outs], device=xs_pad.device)
        return nn.utils.rnn.pad_sequence(outs, batch_first=True), olens, None

    def _encode_one(self, clip: Tensor) -> Tensor:
        """(S,) audio at ``fs`` -> (T', D) output of this clip alone (from the cache when seen before)."""
        hit = self.cache.get(clip)
        if hit is not None:
            return hit
        feats, frames = self.log_mel(clip[None], torch.tensor([clip.numel()], device=clip.device))
        out = super().forward(feats, frames)[0][0]
        self.cache.put(clip, out)
        return out
