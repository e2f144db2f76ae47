"""input_layer patch2d: spectrogram patches as tokens with (time, frequency) positions for the axial rotary."""
from __future__ import annotations

import pytest
import torch

from echo_plugin.asr.encoder.echo_encoder import EchoEncoder, subsampled_lengths
from echo_plugin.asr.encoder.patch_input import PatchEmbedding
from echo_plugin.nn.rotary.axial import AxialRotary

AXIAL = [{"num": 2, "rotary": {"type": "axial", "conf": {"theta": 50.0, "freq_theta": 20.0}}}]


def encoder(**conf) -> EchoEncoder:
    torch.manual_seed(0)
    return EchoEncoder(20, output_size=16, attention_heads=2, linear_units=32, num_blocks=2, dropout_rate=0.0,
                       input_layer="patch2d", **conf).eval()


def test_patches_tile_the_feature_map_and_keep_conv2d_lengths() -> None:
    embed = PatchEmbedding(20, 16, 0.0, torch.nn.Identity())
    x = torch.randn(2, 41, 20)
    tokens, _ = embed(x, None)
    assert tokens.shape == (2, 10, 3, 16)  # 41 // 4 frames, ceil(20 / 8) bins (4 zero-padded)
    assert subsampled_lengths(embed, torch.tensor([41, 30])).tolist() == [10, 7]
    # token (t, f) reads frames 4t..4t+3 and bins 8f..8f+7 only
    y = x.clone()
    y[:, 8:12, 16:20] += 1.0
    changed = (embed(y, None)[0] - tokens).abs().sum(-1) > 0
    assert changed[:, 2, 2].all() and changed.sum() == 2


def test_encoder_output_is_one_vector_per_time_step_and_ignores_padding() -> None:
    enc = encoder(layers=AXIAL)
    assert all(isinstance(b.self_attn.rotary, AxialRotary) for b in enc.blocks)
    x = torch.randn(2, 40, 20)
    with torch.no_grad():
        out, olens, _ = enc(x, torch.tensor([40, 28]))
        alone, _, _ = enc(x[1:, :28], torch.tensor([28]))
    assert out.shape == (2, 10, 16) and olens.tolist() == [10, 7]
    torch.testing.assert_close(out[1, :7], alone[0], atol=1e-5, rtol=1e-5)


def test_axial_positions_reach_the_rotary() -> None:
    """Patch tokens get (t, f) positions: changing the frequency ladder changes the output."""
    enc = encoder(layers=AXIAL)
    x = torch.randn(1, 24, 20)
    with torch.no_grad():
        base, _, _ = enc(x, torch.tensor([24]))
        for block in enc.blocks:
            block.self_attn.rotary.freq_freq.mul_(3.0)
        moved, _, _ = enc(x, torch.tensor([24]))
    assert not torch.allclose(base, moved)


def test_trains_end_to_end() -> None:
    enc = encoder(layers=AXIAL).train()
    out, _, _ = enc(torch.randn(2, 32, 20), torch.tensor([32, 20]))
    out.sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


@pytest.mark.parametrize("layers", [None, [{"num": 2, "rotary": "axial", "attention": "curiosity"}]])
def test_patch_tokens_refuse_one_dimensional_layers(layers) -> None:
    with pytest.raises(ValueError, match="patch2d"):
        encoder(layers=layers)
