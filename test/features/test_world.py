"""WORLD envelope bands (harmonic) and aperiodicity bands (periodicity / D4C)."""
import numpy as np
import pytest

from echo_plugin.features.aperiodic import aperiodicity_bands, band_periodicity
from echo_plugin.features.grid import FrameGrid
from echo_plugin.features.harmonic import envelope_bands
from echo_plugin.features.pitch import world_f0

from .helpers import GRID, LENGTHS, recording, speechlike


def analyse(x, grid=GRID):
    f0, times = world_f0(x, grid)
    return f0, times


@pytest.mark.parametrize("n", LENGTHS)
def test_frames_on_the_grid(n):
    x = speechlike(1.0)[:n]
    f0, times = analyse(x)
    assert envelope_bands(x, f0, times, GRID, 16, 50.0).shape == (GRID.num_frames(n), 16)
    assert aperiodicity_bands(x, f0, times, GRID, 16, 50.0).shape == (GRID.num_frames(n), 16)


def test_envelope_follows_level_in_log_power():
    x = speechlike()
    f0, times = analyse(x)
    quiet = envelope_bands(x, f0, times, GRID, 16, 50.0)
    loud = envelope_bands(2 * x, f0, times, GRID, 16, 50.0)
    np.testing.assert_allclose(loud - quiet, np.log(4.0), atol=1e-3)


def test_envelope_has_the_resonance():
    """The pulse train's resonance (~520 Hz) stands above the top bands."""
    x = speechlike()
    f0, times = analyse(x)
    env = envelope_bands(x, f0, times, GRID, 16, 50.0)[10:-10].mean(axis=0)
    assert env[:6].max() > env[-4:].max() + 3


def test_aperiodicity_rises_with_noise():
    """Same f0 track (from the clean signal), more noise -> higher aperiodicity in every band."""
    rng = np.random.default_rng(0)
    x = speechlike(1.0)
    f0, times = analyse(x)
    voiced = f0 > 0
    levels = []
    for noise in (0.0, 0.03, 0.1, 0.3):
        y = x + noise * rng.standard_normal(len(x)).astype(np.float32)
        levels.append(aperiodicity_bands(y, f0, times, GRID, 8, 50.0)[voiced].mean(axis=0))
    levels = np.array(levels)
    assert np.all(np.diff(levels[:3], axis=0) > 0), levels  # every band, until the top bands reach ~0 dB
    assert np.all(np.diff(levels.mean(axis=1)) > 0), levels
    assert levels[0].mean() < -20 and levels[-1].mean() > -3


def test_aperiodicity_is_zero_db_on_unvoiced_frames():
    x = recording("6_jackson_1")  # "six": s-I-ks, mostly unvoiced
    f0, times = analyse(x)
    ap = aperiodicity_bands(x, f0, times, GRID, 16, 50.0)
    assert np.all(ap[f0 == 0] == 0.0) and (f0 > 0).any() and (ap[f0 > 0] < -3).any()
    assert np.all((ap >= -30.0) & (ap <= 0.0))


def test_band_periodicity_of_pulse_train_is_high():
    x = speechlike(0.5)
    f0, _ = analyse(x)
    strength = band_periodicity(x.astype(np.float64), f0, GRID, 8)
    assert np.median(strength[f0 > 0]) > 0.9


def test_d4c_refused_at_8k_and_runs_at_16k():
    x = speechlike()
    f0, times = analyse(x)
    with pytest.raises(ValueError, match="D4C"):
        aperiodicity_bands(x, f0, times, GRID, 16, 50.0, method="d4c")
    grid16 = FrameGrid(fs=16000, n_fft=512, hop_length=160, win_length=400)
    x16 = np.repeat(x, 2)
    f0, times = analyse(x16, grid16)
    ap = aperiodicity_bands(x16, f0, times, grid16, 16, 50.0, method="d4c")
    assert ap.shape == (grid16.num_frames(len(x16)), 16) and np.all(ap <= 0.0)
