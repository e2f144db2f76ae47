"""Log-mel spectrogram: grid, batch independence, a sine lands in its band."""
import numpy as np
import torch

from echo_plugin.features.spectrogram import LogMelSpectrogram

from .helpers import GRID, LENGTHS, sine


def test_frames_on_the_grid():
    mel = LogMelSpectrogram(GRID, n_mels=40)
    for n in LENGTHS:
        assert mel(torch.zeros(1, n)).shape == (1, GRID.num_frames(n), 40)


def test_zero_padded_batch_gives_the_lone_frames():
    mel = LogMelSpectrogram(GRID, n_mels=40)
    x = torch.from_numpy(sine(300.0, 0.3))
    short = x[:1234]
    batch = torch.zeros(2, len(x))
    batch[0], batch[1, :1234] = x, short
    lone = mel(short[None])[0]
    torch.testing.assert_close(mel(batch)[1, : lone.size(0)], lone, rtol=1e-5, atol=1e-4)


def test_sine_peaks_in_its_band():
    mel = LogMelSpectrogram(GRID, n_mels=40)
    low, high = mel(torch.from_numpy(sine(300.0))[None])[0], mel(torch.from_numpy(sine(2500.0))[None])[0]
    assert low[20].argmax() < high[20].argmax()
    fb = mel.mel.mel_scale.fb.numpy()  # (F, n_mels)
    assert low[20].argmax().item() == int(np.argmax(fb[round(300 / 4000 * 128)]))
