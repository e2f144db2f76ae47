"""f0 (WORLD dio/harvest) on synthetic and real speech, and the pitch features built from it."""
import numpy as np
import pytest
import torch

from echo_plugin.features.pitch import F0Config, extract_f0, pitch_features

from .helpers import GRID, LENGTHS, recording, sine


def check_150(f0):
    assert f0.shape == (GRID.num_frames(4000),) and f0.dtype == np.float32
    voiced = f0[f0 > 0]
    assert len(voiced) > 0.8 * len(f0)
    assert np.all(np.abs(voiced[2:-2] / 150.0 - 1) < 0.03), voiced


def test_sine_150hz():
    check_150(extract_f0(sine(150.0, 0.5), GRID))


@pytest.mark.parametrize("method", ["dio", "harvest"])
def test_harmonic_tone_150hz(method):
    """Harvest calls a pure sine unvoiced (it looks for harmonics); a 3-harmonic tone is voiced for both."""
    tone = sine(150.0, 0.5) + 0.6 * sine(300.0, 0.5) + 0.4 * sine(450.0, 0.5)
    check_150(extract_f0(tone, GRID, F0Config(method=method)))


@pytest.mark.parametrize("speaker", ["jackson", "lucas", "nicolas"])
def test_male_speakers_in_speech_range(speaker):
    """FSDD's male speakers: the bulk of their voiced frames lies in 70-250 Hz.

    The 5-95 % range is checked: DIO makes octave errors on a few percent of
    voiced frames (measured: ~4 % lie more than 0.6 octave from the utterance
    median with the 50-400 Hz search range).
    """
    tracks = [extract_f0(recording(f"{digit}_{speaker}_{take}"), GRID) for digit in range(10) for take in (0, 7)]
    f0 = np.concatenate(tracks)
    voiced = f0[f0 > 0]
    assert 0.3 < len(voiced) / len(f0) < 1.0  # trimmed digits still have unvoiced consonants and edges
    low, median, high = np.percentile(voiced, [5, 50, 95])
    assert 70 <= low and high <= 250 and 80 <= median <= 180, (low, median, high)


def test_silence_and_grid():
    for n in LENGTHS:
        assert extract_f0(np.zeros(n, np.float32), GRID).shape == (GRID.num_frames(n),)
    assert not extract_f0(np.zeros(800, np.float32), GRID).any()


def test_bad_config():
    with pytest.raises(ValueError, match="unknown f0 method"):
        F0Config(method="yin")
    with pytest.raises(ValueError, match="below fs/2"):
        extract_f0(sine(150.0), GRID, F0Config(ceil=5000.0))


def test_pitch_features_interpolate_and_normalise():
    f0 = torch.tensor([[0.0, 125.0, 0.0, 250.0, 0.0, 0.0]])
    feats = pitch_features(f0, torch.tensor([5]))
    voicing, log_f0, normalised, delta = feats[0].unbind(-1)
    assert voicing.tolist() == [0, 1, 0, 1, 0, 0]
    torch.testing.assert_close(log_f0, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0, 0.0]))  # held, interpolated, padding 0
    torch.testing.assert_close(normalised[:5], log_f0[:5] - 0.5)
    torch.testing.assert_close(delta[:5], torch.tensor([0.0, 0.25, 0.5, 0.25, 0.0]))
    assert feats[0, 5].abs().sum() == 0


def test_pitch_features_batch_independent_and_unvoiced_zero():
    a = torch.tensor([100.0, 0.0, 140.0, 0.0, 90.0, 120.0])
    padded = torch.zeros(3, 6)
    padded[0], padded[1, :4] = a, a[:4]
    feats = pitch_features(padded, torch.tensor([6, 4, 6]))
    torch.testing.assert_close(feats[1, :4], pitch_features(a[None, :4], torch.tensor([4]))[0])
    assert feats[2].abs().sum() == 0  # no voiced frame at all
