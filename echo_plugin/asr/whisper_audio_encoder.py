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
"""
from __future__ import annotations

from typing import Any, Optional, Tuple, Union

import humanfriendly
import torch
from torch import Tensor, nn

from echo_plugin.asr.encoder.whisper_style_encoder import WhisperStyleEncoder

WHISPER_RATE = 16000
HOP_LENGTH = 160  # openai-whisper's: 10 ms at 16 kHz


class WhisperAudioEncoder(WhisperStyleEncoder):
    """WhisperStyleEncoder over openai-whisper's log-mel of raw audio.

    Args:
        input_size: ignored (ESPnet's ``input_size: 1`` for a model without frontend).
        n_mels: mel channels (80; 128 for large-v3).  fs: the audio's sample rate (resampled to 16 kHz).
        pad_seconds: zero-pad shorter audio to this length first (Whisper: 30.0; 0: no padding).
        **kwargs: WhisperStyleEncoder's (``output_size``, ..., ``whisper_checkpoint``).
    """

    def __init__(self, input_size: int = 1, n_mels: int = 80, fs: Union[int, str] = WHISPER_RATE,
                 pad_seconds: float = 30.0, **kwargs: Any) -> None:
        super().__init__(n_mels, **kwargs)
        if pad_seconds < 0:
            raise ValueError(f"pad_seconds must be 0 or more, got {pad_seconds}")
        self.n_mels = n_mels
        self.fs = int(humanfriendly.parse_size(fs) if isinstance(fs, str) else fs)
        self.pad_samples = int(round(pad_seconds * WHISPER_RATE))

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
        feats, frames = self.log_mel(xs_pad, ilens)
        return super().forward(feats, frames)
