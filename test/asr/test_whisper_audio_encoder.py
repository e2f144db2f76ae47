"""WhisperAudioEncoder (``encoder: whisper_style_audio``): openai-whisper's log-mel, then WhisperStyleEncoder.

Against openai-whisper's own ``pad_or_trim`` + ``log_mel_spectrogram`` (exact), with 8 kHz input
resampled first, without padding, per utterance in a padded batch; the output is WhisperStyleEncoder's
on that log-mel; and ESPnet builds it without a frontend (``input_size: 1``), as its Whisper configs.
"""
from __future__ import annotations

import pytest
import torch

whisper = pytest.importorskip("whisper", reason="openai-whisper: pip install openai-whisper")

from echo_plugin.asr.encoder.whisper_style_encoder import WhisperStyleEncoder  # noqa: E402
from echo_plugin.asr.whisper_audio_encoder import WhisperAudioEncoder  # noqa: E402

TINY = dict(output_size=16, attention_heads=2, num_blocks=1)


def audio(seconds: float, rate: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * rate)) / rate
    return (0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.01 * torch.randn(t.shape, generator=g)).float()


def test_log_mel_is_openai_whispers_padded_to_30_seconds() -> None:
    encoder = WhisperAudioEncoder(**TINY)
    clips = [audio(0.7, 16000, 0), audio(1.3, 16000, 1)]
    batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    mel, frames = encoder.log_mel(batch, torch.tensor([c.numel() for c in clips]))
    assert mel.shape == (2, 3000, 80) and frames.tolist() == [3000, 3000]
    for i, clip in enumerate(clips):  # each clip's own, not the batch's zero padding
        assert torch.equal(mel[i].T, whisper.log_mel_spectrogram(whisper.pad_or_trim(clip)))


def test_other_rates_are_resampled_and_padding_is_optional() -> None:
    import torchaudio.functional as AF

    clip = audio(0.5, 8000, 2)
    encoder = WhisperAudioEncoder(fs=8000, pad_seconds=0.0, **TINY)
    mel, frames = encoder.log_mel(clip[None], torch.tensor([clip.numel()]))
    expected = whisper.log_mel_spectrogram(AF.resample(clip, 8000, 16000))
    assert frames.tolist() == [expected.size(1)] == [50]  # 0.5 s at 100 frames per second
    assert torch.equal(mel[0].T, expected)


def test_forward_is_the_whisper_style_encoder_on_the_log_mel() -> None:
    torch.manual_seed(0)
    encoder = WhisperAudioEncoder(pad_seconds=0.0, **TINY).eval()
    clips = [audio(0.4, 16000, 3), audio(0.25, 16000, 4)]
    batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    lengths = torch.tensor([c.numel() for c in clips])
    with torch.no_grad():
        out, olens, _ = encoder(batch, lengths)
        mel, frames = encoder.log_mel(batch, lengths)
        expected, expected_lens, _ = WhisperStyleEncoder.forward(encoder, mel, frames)
    assert olens.tolist() == expected_lens.tolist() == [20, 13]
    assert torch.equal(out, expected)
    with pytest.raises(ValueError, match="takes audio"):
        encoder(mel, frames)


def test_espnet_builds_it_without_a_frontend() -> None:
    import echo_plugin

    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    args = ASRTask.get_parser().parse_args([
        "--token_list", "a,b,c,<sos/eos>", "--input_size", "1", "--normalize", "none",
        "--encoder", "whisper_style_audio", "--encoder_conf", "output_size=16", "--encoder_conf", "num_blocks=1",
        "--encoder_conf", "attention_heads=2", "--encoder_conf", "pad_seconds=0",
        "--decoder", "transformer", "--decoder_conf", "num_blocks=1", "--decoder_conf", "linear_units=8",
    ])  # fmt: skip
    args.token_list = ["<blank>", "a", "b", "<sos/eos>"]
    model = ASRTask.build_model(args).eval()
    assert model.frontend is None and isinstance(model.encoder, WhisperAudioEncoder)
    speech = audio(0.3, 16000, 5)[None]
    with torch.no_grad():
        encoded, lengths = model.encode(speech, torch.tensor([speech.size(1)]))
    assert encoded.shape == (1, 15, 16) and lengths.tolist() == [15]


def test_frozen_encoder_encodes_each_clip_alone_and_caches_its_output() -> None:
    torch.manual_seed(0)
    encoder = WhisperAudioEncoder(fs=8000, pad_seconds=0.0, freeze_weights=True, cache_mb=1, **TINY)
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not encoder.train().training  # a frozen encoder stays in eval mode
    clips = [audio(0.4, 8000, 6), audio(0.25, 8000, 7)]
    batch = torch.nn.utils.rnn.pad_sequence(clips, batch_first=True)
    lengths = torch.tensor([c.numel() for c in clips])
    out, olens, _ = encoder(batch, lengths)
    assert not out.requires_grad and olens.tolist() == [20, 13] and len(encoder.cache) == 2  # 50 per second
    for i, c in enumerate(clips):  # each clip's output is that of the clip alone, the batch padding zero
        alone, n, _ = WhisperStyleEncoder.forward(encoder, *encoder.log_mel(c[None], torch.tensor([c.numel()])))
        assert torch.allclose(out[i, : olens[i]], alone[0, : n[0]], atol=1e-6)
        assert not out[i, olens[i]:].any()
    with torch.no_grad():  # a changed weight shows whether the second call reads the cache or encodes again
        encoder.ln_post.bias.add_(1.0)
    again, _, _ = encoder(batch.flip(0), lengths.flip(0))
    assert torch.equal(again[1, :20], out[0, :20]) and torch.equal(again[0, :13], out[1, :13])
    other = audio(0.4, 8000, 8)
    fresh, _, _ = encoder(other[None], torch.tensor([other.numel()]))
    assert len(encoder.cache) == 3
    expected, _, _ = WhisperStyleEncoder.forward(encoder, *encoder.log_mel(other[None], torch.tensor([other.numel()])))
    assert torch.allclose(fresh, expected, atol=1e-6)


def test_cache_budget_and_cache_without_freezing() -> None:
    encoder = WhisperAudioEncoder(fs=8000, pad_seconds=0.0, freeze_weights=True, cache_mb=1e-3, **TINY)
    clip = audio(0.4, 8000, 9)  # 20 frames x 16 channels x 4 bytes = 1280 bytes > 1048 bytes of budget
    encoder(clip[None], torch.tensor([clip.numel()]))
    assert len(encoder.cache) == 0 and encoder.cache.used_bytes == 0
    with pytest.raises(ValueError, match="cache_mb needs freeze_weights"):
        WhisperAudioEncoder(cache_mb=1, **TINY)


def test_the_cache_key_tells_dtypes_apart() -> None:
    """The same bytes as float32 and as int32 are different clips."""
    from echo_plugin.asr.audio_output_cache import AudioOutputCache

    floats = torch.tensor([0.5, -0.25], dtype=torch.float32)
    assert AudioOutputCache.key(floats) != AudioOutputCache.key(floats.view(torch.int32))
    assert AudioOutputCache.key(floats) == AudioOutputCache.key(floats.clone())
