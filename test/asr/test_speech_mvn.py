"""speech_mvn: per-utterance speech-frame statistics with a pooled prior (online CMVN), checked against numpy."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import echo_plugin
from echo_plugin.asr.normalize.speech_mvn import SpeechMVN, speech_frame_mask
from echo_plugin.recipe.speaker_stats import speech_frames

RNG = np.random.default_rng(0)


def pooled_file(tmp_path: Path, frames: np.ndarray) -> Path:
    path = tmp_path / "pooled_stats.npz"
    np.savez(path, count=np.array(frames.shape[0]), sum=frames.sum(0), sum_square=(frames ** 2).sum(0))
    return path


def utterance(n_speech: int, n_silence: int, dim: int = 5) -> np.ndarray:
    """Log features: loud speech frames, then silence 30 log units lower."""
    speech = RNG.normal(2.0, 1.0, size=(n_speech, dim))
    silence = RNG.normal(-30.0, 0.1, size=(n_silence, dim))
    return np.concatenate([speech, silence])


def reference(x: np.ndarray, tau: float, mu0: np.ndarray, var0: np.ndarray, vad_range: float = 8.0) -> np.ndarray:
    """The module docstring's formula, written independently in numpy."""
    energy = np.log(np.exp(x).sum(-1))
    speech = x[energy >= energy.max() - vad_range]
    n, s1, s2 = len(speech), speech.sum(0), (speech ** 2).sum(0)
    mean = (s1 + tau * mu0) / (n + tau)
    var = (s2 + tau * (var0 + mu0 ** 2)) / (n + tau) - mean ** 2
    return (x - mean) / np.sqrt(var)


@pytest.mark.parametrize("tau", [0.0, 7.0, 100.0])
def test_matches_the_formula_and_ignores_silence_and_padding(tmp_path: Path, tau: float) -> None:
    prior = RNG.normal(1.0, 1.5, size=(400, 5))
    layer = SpeechMVN(stats_file=pooled_file(tmp_path, prior), prior_frames=tau)
    a, b = utterance(20, 10), utterance(12, 3)
    x = torch.zeros(2, 30, 5, dtype=torch.float64)
    x[0], x[1, :15] = torch.from_numpy(a), torch.from_numpy(b)
    y, lengths = layer(x.float(), torch.tensor([30, 15]))
    mu0, var0 = prior.mean(0), prior.var(0)
    np.testing.assert_allclose(y[0].numpy(), reference(a, tau, mu0, var0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y[1, :15].numpy(), reference(b, tau, mu0, var0), rtol=1e-4, atol=1e-4)
    assert torch.all(y[1, 15:] == 0) and lengths.tolist() == [30, 15]
    # one utterance alone (a user's single file) gets exactly what it got in the batch
    alone, _ = layer(x[1:, :15].float(), torch.tensor([15]))
    torch.testing.assert_close(alone[0], y[1, :15])


def test_silence_does_not_move_the_statistics() -> None:
    layer = SpeechMVN(prior_frames=0.0)
    speech = utterance(25, 0)
    padded = np.concatenate([speech, utterance(0, 40)])
    y1, _ = layer(torch.from_numpy(speech)[None].float())
    y2, _ = layer(torch.from_numpy(padded)[None].float())
    torch.testing.assert_close(y1[0], y2[0, :25], rtol=1e-4, atol=1e-4)


def test_infinite_prior_is_global_mvn_and_a_prior_needs_its_file(tmp_path: Path) -> None:
    prior = RNG.normal(3.0, 2.0, size=(500, 5))
    layer = SpeechMVN(stats_file=pooled_file(tmp_path, prior), prior_frames=math.inf)
    x = torch.from_numpy(utterance(10, 5)).float()[None]
    y, _ = layer(x)
    expect = (x - torch.tensor(prior.mean(0)).float()) / torch.tensor(prior.std(0)).float()
    torch.testing.assert_close(y, expect)
    with pytest.raises(RuntimeError, match="needs stats_file"):
        SpeechMVN(prior_frames=10.0)(x)
    with pytest.raises(ValueError, match="prior_frames"):
        SpeechMVN(prior_frames=-1.0)


def test_the_speaker_statistics_use_the_same_speech_frames() -> None:
    feats = torch.from_numpy(utterance(9, 6)).float()
    mask = speech_frame_mask(feats[None], torch.tensor([15]))[0]
    assert mask.tolist() == speech_frames(feats).tolist() == [True] * 9 + [False] * 6


def test_registered_and_built_by_espnet_from_yaml(tmp_path: Path) -> None:
    echo_plugin.register()
    from espnet2.tasks.asr import normalize_choices

    prior = RNG.normal(size=(50, 5))
    cls = normalize_choices.get_class("speech_mvn")
    layer = cls(stats_file=str(pooled_file(tmp_path, prior)), prior_frames=50)
    assert isinstance(layer, SpeechMVN) and layer.prior_frames == 50.0
