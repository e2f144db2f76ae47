"""Phase features: reassigned frequency offset and group delay per band."""
import torch

from echo_plugin.features.bands import mel_band_edges
from echo_plugin.features.phase import PhaseFeatures

from .helpers import GRID, LENGTHS, sine


def test_frames_on_the_grid_and_silence_is_zero():
    phase = PhaseFeatures(GRID, n_bands=16)
    for n in LENGTHS:
        out = phase(torch.zeros(1, n))
        assert out.shape == (1, GRID.num_frames(n), 32) and out.abs().sum() == 0


def test_frequency_offset_of_a_sine_is_exact_between_bins():
    """A sine anywhere in a band (on or between bins) gives its offset from the band centre."""
    phase = PhaseFeatures(GRID, n_bands=16)
    lower, centre, upper = mel_band_edges(8000, 16)[9]
    half = (upper - lower) / 2
    for hz in (centre - 0.3 * half, centre + 0.05 * half, centre + 0.27 * half):
        out = phase(torch.from_numpy(sine(hz))[None])[0, 10:-10, 9]
        torch.testing.assert_close(out, torch.full_like(out, (hz - centre) / half), atol=2e-3, rtol=0)


def test_group_delay_locates_a_click():
    phase = PhaseFeatures(GRID, n_bands=16)
    x = torch.zeros(1, 2000)
    x[0, 800 + 30] = 1.0  # 30 samples after the centre of frame 10
    delay = phase(x)[0, 10, 16:]
    torch.testing.assert_close(delay, torch.full_like(delay, 30 / 100), atol=1e-3, rtol=0)
    torch.testing.assert_close(phase(-x)[0, 10, 16:], delay)  # the click's sign does not matter


def test_zero_padded_batch_gives_the_lone_frames():
    phase = PhaseFeatures(GRID, n_bands=16)
    x = torch.from_numpy(sine(440.0, 0.3)) + 0.01 * torch.randn(2400, generator=torch.Generator().manual_seed(0))
    batch = torch.zeros(2, 2400)
    batch[0], batch[1, :1500] = x, x[:1500]
    lone = phase(x[None, :1500])[0]
    torch.testing.assert_close(phase(batch)[1, : lone.size(0)], lone, rtol=1e-4, atol=1e-4)
