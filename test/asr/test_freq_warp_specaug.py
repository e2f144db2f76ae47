"""Frequency-warp augmentation: the warp formula, identity at alpha=1, ESPnet registration."""
from __future__ import annotations

import torch

import echo_plugin
from echo_plugin.asr.specaug.freq_warp_specaug import FreqWarpSpecAug, warp_frequency


def test_alpha_one_is_identity_and_warp_matches_explicit_interpolation() -> None:
    x = torch.randn(2, 5, 8)
    assert torch.equal(warp_frequency(x, torch.ones(2)), x)
    alpha = torch.tensor([1.25, 0.8])
    y = warp_frequency(x, alpha)
    for b in range(2):
        for f in range(8):
            src = min(max(f / alpha[b].item(), 0.0), 7.0)
            lo = int(src)
            hi = min(lo + 1, 7)
            expect = x[b, :, lo] * (1 - (src - lo)) + x[b, :, hi] * (src - lo)
            torch.testing.assert_close(y[b, :, f], expect)


def test_stretch_moves_a_peak_up_in_frequency() -> None:
    x = torch.zeros(1, 1, 40)
    x[0, 0, 10] = 1.0
    y = warp_frequency(x, torch.tensor([1.2]))
    assert y[0, 0].argmax().item() == 12


def test_registered_and_keeps_shape() -> None:
    echo_plugin.register()
    from espnet2.tasks.asr import specaug_choices

    assert specaug_choices.get_class("freq_warp") is FreqWarpSpecAug
    aug = FreqWarpSpecAug(freq_warp_range=(0.9, 1.1), apply_time_warp=False, num_freq_mask=1, num_time_mask=1,
                          time_mask_width_range=(0, 2), freq_mask_width_range=(0, 3))
    out, lengths = aug(torch.randn(3, 20, 16), torch.tensor([20, 15, 10]))
    assert out.shape == (3, 20, 16) and lengths.tolist() == [20, 15, 10]
