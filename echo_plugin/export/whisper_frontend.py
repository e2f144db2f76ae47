"""A Whisper front end (ESPnet's ``WhisperFrontend``, Echo's ``whisper_pretrained``) as exportable ops.

:class:`WhisperFrontendGraph` computes, for one utterance (batch 1), what
:class:`~echo_plugin.asr.frontend.pretrained_whisper.PretrainedWhisperFrontend` computes in eval mode:

1. resampling to Whisper's 16 kHz when the model's rate ``fs`` differs (:class:`SincResample`:
   torchaudio's ``resample`` with its default sinc / Hann filter, the kernel precomputed as
   ``functional.resample`` computes it, in float32), so the graph takes audio at the model's rate;
2. Whisper's log-mel (:class:`WhisperLogMel`): STFT (n_fft 400, hop 160, periodic Hann, centred,
   reflect padding) in real arithmetic (:mod:`echo_plugin.export.real_stft`; ``torch.stft``'s
   complex output has no ONNX type), the last frame dropped, power, Whisper's mel matrix, log10
   of at least 1e-10, the floor at the utterance's maximum - 8 and ``(x + 4) / 4``;
3. Whisper's encoder (:class:`WhisperEncoderGraph`): conv stem, positional embedding, blocks,
   ``ln_post``; an input longer than the 1500 positions (30 s) keeps its first 1500 frames, as
   ESPnet's ``whisper_encode`` does, without its Python branch on the length (which tracing would
   freeze at the trace input's length).

The feature cache of ``PretrainedWhisperFrontend`` (``cache_mb``) is not part of the graph; while
exporting and checking it is turned off
(:func:`echo_plugin.asr.audio_output_cache.caches_turned_off`), so PyTorch's reference is
computed, not looked up.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from echo_plugin.export.real_stft import dft_basis, power_spectrum

WHISPER_RATE = 16000
LOG_FLOOR_BELOW_MAX = 8.0  # Whisper's log-mel keeps values within 8 (log10 units, 80 dB) of the maximum


class SincResample(nn.Module):
    """torchaudio's ``functional.resample(x, orig, new)`` (defaults: sinc_interp_hann, lowpass width 6,
    rolloff 0.99) with its kernel precomputed and the output length from ``lengths``, not Python ints."""

    def __init__(self, orig_freq: int, new_freq: int) -> None:
        super().__init__()
        import torchaudio

        # dtype float32: the kernel computed in float32, as functional.resample computes it for float32 audio
        ref = torchaudio.transforms.Resample(orig_freq, new_freq, dtype=torch.float32)
        self.orig, self.new, self.width = orig_freq // ref.gcd, new_freq // ref.gcd, int(ref.width)
        self.register_buffer("kernel", ref.kernel.detach().clone(), persistent=False)  # (new, 1, 2 width + orig)

    def forward(self, audio: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """audio (B, N) at orig_freq, lengths (B,) -> (B, M) at new_freq, M = ceil(N new / orig), and (B,)."""
        x = F.pad(audio, (self.width, self.width + self.orig)).unsqueeze(1)
        y = F.conv1d(x, self.kernel, stride=self.orig)  # (B, new, N // orig + 1): phase j of each output block
        y = y.transpose(1, 2).reshape(audio.shape[0], -1)
        out_lengths = torch.div(lengths * self.new + self.orig - 1, self.orig, rounding_mode="floor")
        return y[:, : out_lengths[0]], out_lengths


class WhisperLogMel(nn.Module):
    """ESPnet's ``WhisperFrontend.log_mel_spectrogram`` (openai-whisper's ``log_mel_spectrogram``) in real ops."""

    def __init__(self, n_fft: int, hop: int, filters: Tensor) -> None:
        super().__init__()
        self.hop = int(hop)
        basis = dft_basis(n_fft, torch.hann_window(n_fft, dtype=torch.float64))
        self.register_buffer("basis", basis, persistent=False)  # (2K, 1, n_fft)
        self.register_buffer("filters", filters.detach().float().t().contiguous(), persistent=False)  # (K, M)

    def forward(self, audio: Tensor) -> Tensor:
        """audio (B, N) at 16 kHz -> log-mel (B, M, N // hop), scaled as Whisper's encoder expects."""
        power = power_spectrum(audio, self.basis, self.hop, center=True)[:, :-1]  # Whisper drops the last frame
        log_spec = torch.matmul(power, self.filters).clamp(min=1e-10).log10()  # (B, T, M)
        peak = log_spec.flatten(1).max(dim=-1).values[:, None, None]
        log_spec = torch.maximum(log_spec, peak - LOG_FLOOR_BELOW_MAX)
        return ((log_spec + 4.0) / 4.0).transpose(1, 2)


class WhisperEncoderGraph(nn.Module):
    """ESPnet's ``WhisperFrontend.whisper_encode`` of an openai-whisper ``AudioEncoder``, trace-safe."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, mel: Tensor) -> Tensor:
        """mel (B, M, T) -> features (B, min((T + 1) // 2, n_ctx), D)."""
        enc = self.encoder
        x = F.gelu(enc.conv1(mel))
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x[:, : enc.positional_embedding.size(0)]  # no-op up to 30 s; longer: the first 1500 frames
        x = x + enc.positional_embedding[: x.size(1)]
        for block in enc.blocks:
            x = block(x)
        return enc.ln_post(x)


class WhisperFrontendGraph(nn.Module):
    """A Whisper frontend's forward for one utterance: audio at ``fs`` -> (1, T, D) features, (1,) lengths."""

    def __init__(self, frontend: nn.Module) -> None:
        super().__init__()
        from echo_plugin.export.onnx_ctc import ExportError

        encoder = frontend.whisper.encoder
        quantized = [name for name, m in encoder.named_modules() if "quantized" in type(m).__module__]
        if quantized:
            raise ExportError(f"frontend: the Whisper encoder is quantized in PyTorch (layers {quantized[0]}, ...): "
                              "export the float model; the ONNX graph is quantized by quantize_int8")
        self.fs = int(getattr(frontend, "fs", WHISPER_RATE))
        self.resample = SincResample(self.fs, WHISPER_RATE) if self.fs != WHISPER_RATE else None
        filters = frontend.mel_filters(torch.device("cpu"), frontend.n_mels)  # (M, K)
        self.logmel = WhisperLogMel(int(frontend.n_fft), int(frontend.hop_length), filters)
        self.whisper = WhisperEncoderGraph(encoder)
        self.n_ctx = int(encoder.positional_embedding.size(0))

    def forward(self, speech: Tensor, speech_lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """speech (1, N) at ``fs``, speech_lengths (1,) -> features (1, T, D), lengths (1,)."""
        audio, lengths = speech[:, : speech_lengths[0]], speech_lengths  # the utterance alone, as the frontend
        if self.resample is not None:
            audio, lengths = self.resample(audio, lengths)
        feats = self.whisper(self.logmel(audio))
        frames = torch.div(lengths, self.logmel.hop, rounding_mode="floor")  # STFT frames less the last
        out_lengths = torch.div(frames - 1, 2, rounding_mode="floor") + 1  # conv2: kernel 3, stride 2, padding 1
        return feats, out_lengths.clamp(max=self.n_ctx)


def is_whisper_frontend(frontend: nn.Module) -> bool:
    """ESPnet's ``WhisperFrontend`` or a subclass (``PretrainedWhisperFrontend``)."""
    try:
        from espnet2.asr.frontend.whisper import WhisperFrontend
    except ImportError:  # pragma: no cover - ESPnet always has it
        return False
    return isinstance(frontend, WhisperFrontend)


