"""Frame grid, band matrices and the waveform conv-stack geometry."""
import numpy as np
import pytest
import torch

from echo_plugin.features.bands import mel_band_response, mel_bands
from echo_plugin.features.grid import FrameGrid, fit_frames, frame_mask
from echo_plugin.features.waveform import pad_for_frames, receptive_field, split_hop


def test_num_frames_is_centred_stft_count():
    grid = FrameGrid(fs=8000, n_fft=256, hop_length=80, win_length=200)
    assert [grid.num_frames(n) for n in (0, 79, 80, 81, 4000)] == [1, 1, 2, 2, 51]
    assert grid.frame_lengths(torch.tensor([79, 4000])).tolist() == [1, 51]
    assert grid.frame_period_ms == 10.0
    assert FrameGrid(fs=16000, n_fft=512, hop_length=128).win_length == 512


def test_grid_rejects_window_longer_than_fft():
    with pytest.raises(ValueError, match="win_length"):
        FrameGrid(fs=8000, n_fft=256, hop_length=80, win_length=400)


def test_fit_frames_cuts_and_edge_pads():
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert fit_frames(a, 2).tolist() == [[0, 1], [2, 3]]
    assert fit_frames(a, 4).tolist() == [[0, 1], [2, 3], [4, 5], [4, 5]]
    assert fit_frames(np.zeros((0,)), 2).tolist() == [0, 0]


def test_frame_mask():
    assert frame_mask(torch.tensor([1, 3]), 3).tolist() == [[True, False, False], [True, True, True]]


@pytest.mark.parametrize("n_bands", [8, 16, 40, 80])
def test_mel_bands_are_unit_sum_rows_without_empty_bands(n_bands):
    bands = mel_bands(129, 8000, n_bands)
    assert bands.shape == (n_bands, 129)
    np.testing.assert_allclose(bands.sum(axis=1), 1.0)
    centres = (bands * np.linspace(0, 4000, 129)).sum(axis=1)
    assert np.all(np.diff(centres) > 0)  # bands go up in frequency


def test_mel_band_response_peaks_at_one():
    response = mel_band_response(np.linspace(0, 4000, 2049), 8000, 10)
    assert np.all(response.max(axis=1) > 0.95) and response.max() <= 1.0


@pytest.mark.parametrize(
    "hop, strides", [(80, [5, 4, 4]), (160, [5, 4, 4, 2]), (128, [4, 4, 4, 2]), (7, [7]), (1, [1])]
)
def test_split_hop(hop, strides):
    assert split_hop(hop) == strides
    assert int(np.prod(split_hop(hop))) == hop


def test_receptive_field_and_padding_give_centred_frames():
    kernels, strides = [10, 8, 8], [5, 4, 4]
    field = receptive_field(kernels, strides)
    assert field == 10 + 7 * 5 + 7 * 20
    wave = torch.arange(1, 1001, dtype=torch.float32)[None]
    padded = pad_for_frames(wave, torch.tensor([1000]), field, 80)
    frames = (padded.size(1) - field) // 80 + 1
    assert frames == 1000 // 80 + 1
    # frame t reads [t*80 - field//2, ...): its middle sample is sample t*80 of the utterance
    t = 5
    window = padded[0, t * 80 : t * 80 + field]
    assert window[field // 2].item() == wave[0, t * 80].item()
