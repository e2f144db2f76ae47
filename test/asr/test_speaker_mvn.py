"""speaker_mvn: the formula, the fallback, refusals, registration and the model's plumbing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import echo_plugin
from echo_plugin.asr.normalize.speaker_mvn import SpeakerMVN


def pooled_file(tmp_path: Path, frames: np.ndarray) -> Path:
    path = tmp_path / "pooled_stats.npz"
    np.savez(path, count=np.array(frames.shape[0]), sum=frames.sum(0), sum_square=(frames ** 2).sum(0))
    return path


def test_normalizes_each_utterance_with_its_speaker_statistics_and_zeroes_padding() -> None:
    layer = SpeakerMVN()
    x = torch.randn(2, 6, 4)
    stats = torch.stack([torch.stack([torch.randn(4), torch.rand(4) + 0.5]) for _ in range(2)])  # (B, 2, D)
    with layer.provide(stats):
        y, lengths = layer(x, torch.tensor([6, 4]))
    expect = (x - stats[:, None, 0]) / stats[:, None, 1]
    torch.testing.assert_close(y[0], expect[0])
    torch.testing.assert_close(y[1, :4], expect[1, :4])
    assert torch.all(y[1, 4:] == 0) and lengths.tolist() == [6, 4]


def test_without_statistics_eval_uses_the_pooled_file_and_training_refuses(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).normal(3.0, 2.0, size=(500, 4))
    layer = SpeakerMVN(stats_file=pooled_file(tmp_path, frames)).eval()
    x = torch.randn(1, 5, 4)
    y, _ = layer(x)
    mean, std = frames.mean(0), frames.std(0)
    torch.testing.assert_close(y, (x - torch.tensor(mean).float()) / torch.tensor(std).float())
    with pytest.raises(RuntimeError, match="without 'spk_stats'"):
        layer.train()(x)
    with pytest.raises(RuntimeError, match="needs stats_file"):
        SpeakerMVN().eval()(x)


def test_statistics_of_the_wrong_shape_are_refused() -> None:
    layer = SpeakerMVN()
    with layer.provide(torch.ones(3, 2, 4)), pytest.raises(ValueError, match=r"\(B, 2, D\)"):
        layer(torch.randn(2, 5, 4))


def test_registered_as_an_espnet_normalize_choice() -> None:
    echo_plugin.register()
    from espnet2.tasks.asr import normalize_choices

    assert normalize_choices.get_class("speaker_mvn") is SpeakerMVN


def build_model(tmp_path: Path, normalize: str) -> torch.nn.Module:
    """A tiny ``model: echo`` with ESPnet's log-mel frontend (8 bins) and the given normalize."""
    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\na\nb\n<sos/eos>\n")
    args = ASRTask.get_parser().parse_args([
        "--token_list", str(tmp_path / "tokens.txt"), "--token_type", "char", "--model", "echo",
        "--frontend", "default", "--frontend_conf", "fs=8000", "--frontend_conf", "n_fft=256",
        "--frontend_conf", "hop_length=80", "--frontend_conf", "n_mels=8", "--normalize", normalize,
        "--encoder", "echo", "--encoder_conf", "output_size=16", "--encoder_conf", "attention_heads=2",
        "--encoder_conf", "linear_units=32", "--encoder_conf", "num_blocks=1",
        "--decoder", "echo", "--decoder_conf", "attention_heads=2", "--decoder_conf", "linear_units=32",
        "--decoder_conf", "num_blocks=1",
    ])  # fmt: skip
    torch.manual_seed(0)
    return ASRTask.build_model(args)


def test_echo_model_passes_the_batch_statistics_to_the_normalization(tmp_path: Path) -> None:
    """model: echo + normalize: speaker_mvn: the loss uses (feats - mean_spk) / std_spk; other stats, other loss."""
    model = build_model(tmp_path, "speaker_mvn").eval()
    speech = torch.randn(2, 4000) * 0.1
    lengths = torch.tensor([4000, 3000])
    text = torch.tensor([[2, 3, 2], [3, 2, -1]])
    text_lengths = torch.tensor([3, 2])
    feats, feats_lengths = model._extract_feats(speech, lengths)
    dim = feats.shape[-1]
    stats = torch.stack([torch.zeros(2, dim), torch.ones(2, dim)], dim=1)  # mean 0, std 1: identity
    shifted = torch.stack([torch.full((2, dim), 2.0), torch.full((2, dim), 3.0)], dim=1)
    with torch.no_grad():
        loss_identity = model(speech, lengths, text, text_lengths, spk_stats=stats)[0]
        loss_shifted = model(speech, lengths, text, text_lengths, spk_stats=shifted)[0]
        with model.normalize.provide(stats):
            out_identity, _ = model.encode(speech, lengths)
        encoded, _, _ = model.encoder(feats.clone(), feats_lengths)
        with model.normalize.provide(shifted):
            out_shifted, _ = model.encode(speech, lengths)
        mask = (torch.arange(feats.shape[1])[None, :] < feats_lengths[:, None])[..., None]
        encoded_shifted, _, _ = model.encoder(((feats - 2.0) / 3.0) * mask, feats_lengths)
    torch.testing.assert_close(out_identity, encoded)
    torch.testing.assert_close(out_shifted, encoded_shifted)
    assert not torch.isclose(loss_identity, loss_shifted)


def test_echo_model_refuses_statistics_without_speaker_mvn(tmp_path: Path) -> None:
    model = build_model(tmp_path, "utterance_mvn")
    with pytest.raises(ValueError, match="speaker_mvn"):
        model(torch.randn(1, 4000), torch.tensor([4000]), torch.tensor([[2, 3]]), torch.tensor([2]),
              spk_stats=torch.zeros(1, 2, 8))


def test_with_the_echo_frontend_speaker_statistics_replace_its_per_utterance_input_norm(tmp_path: Path) -> None:
    """Statistics equal to each utterance's own give the frontend's utterance normalization back; the fused
    output is not normalized again."""
    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\na\nb\n<sos/eos>\n")
    frontend = ("{fs: 8000, n_fft: 256, hop_length: 80, n_mels: 8, features: [spectrogram, waveform], "
                "output_size: 16}")
    args = ASRTask.get_parser().parse_args([
        "--token_list", str(tmp_path / "tokens.txt"), "--token_type", "char", "--model", "echo",
        "--frontend", "echo", "--frontend_conf", frontend, "--normalize", "speaker_mvn",
        "--encoder", "echo", "--encoder_conf", "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 1}",
        "--decoder", "echo", "--decoder_conf", "{attention_heads: 2, linear_units: 32, num_blocks: 1}",
    ])  # fmt: skip
    torch.manual_seed(0)
    model = ASRTask.build_model(args).eval()
    speech = torch.randn(2, 4000) * 0.1
    lengths = torch.tensor([4000, 2500])
    raw, frames = model.frontend.speaker_features(speech, lengths)
    own = []
    for i, n in enumerate(frames.tolist()):
        x = raw[i, :n].double()
        own.append(torch.stack([x.mean(0), x.std(0, unbiased=False)]).float())
    with torch.no_grad():
        plain = model.frontend.extract(speech, lengths).feats
        with model.normalize.provide(torch.stack(own)):
            speaker = model.frontend.extract(speech, lengths, input_norm=model.normalize).feats
            encoded, _ = model.encode(speech, lengths)
        expect, _, _ = model.encoder(speaker, frames)
    torch.testing.assert_close(speaker, plain, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(encoded, expect)
