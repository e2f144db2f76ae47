"""EchoEncoder: subsampled lengths, padding invariance, per-group layer specs."""
import pytest
import torch

from echo_plugin.asr.encoder.echo_encoder import EchoEncoder
from echo_plugin.nn.attention import MultiHeadAttention
from echo_plugin.nn.rotary import NoRotary, StandardRotary

SUBSAMPLED = {
    "conv2d": lambda t: ((t - 1) // 2 - 1) // 2,
    "conv2d2": lambda t: (t - 1) // 2 - 2,
    "conv2d6": lambda t: ((t - 1) // 2 - 2) // 3,
    "conv2d8": lambda t: (((t - 1) // 2 - 1) // 2 - 1) // 2,
    "linear": lambda t: t,
}


def tiny_encoder(**conf) -> EchoEncoder:
    torch.manual_seed(0)
    conf = {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 2, **conf}
    return EchoEncoder(input_size=20, **conf).eval()


@pytest.mark.parametrize("input_layer", sorted(SUBSAMPLED))
def test_output_lengths_follow_subsampling(input_layer):
    encoder = tiny_encoder(input_layer=input_layer)
    ilens = torch.tensor([61, 40, 23])
    out, olens, states = encoder(torch.randn(3, 61, 20), ilens)
    expected = torch.tensor([SUBSAMPLED[input_layer](int(n)) for n in ilens])
    assert torch.equal(olens, expected)
    assert out.shape == (3, int(expected.max()), 16) and states is None
    assert encoder.output_size() == 16


@pytest.mark.parametrize("input_layer", ["conv2d", "linear"])
def test_padding_does_not_change_shorter_utterance(input_layer):
    encoder = tiny_encoder(input_layer=input_layer, norm="rms_norm")
    torch.manual_seed(1)
    long, short = torch.randn(50, 20), torch.randn(31, 20)
    batch = torch.randn(2, 50, 20) * 10  # padding frames hold noise, not zeros
    batch[0], batch[1, :31] = long, short
    out, olens, _ = encoder(batch, torch.tensor([50, 31]))
    alone, alone_lens, _ = encoder(short[None], torch.tensor([31]))
    assert olens[1] == alone_lens[0] == alone.size(1)
    torch.testing.assert_close(out[1, : olens[1]], alone[0], rtol=1e-4, atol=1e-5)


def test_layer_groups_choose_rotary_per_depth():
    encoder = tiny_encoder(
        num_blocks=3,
        layers=[
            {"num": 2, "attention": "standard", "rotary": {"type": "standard", "conf": {"theta": 100.0}}},
            {"num": 1, "rotary": "none"},
        ],
    )
    rotaries = [block.self_attn.rotary for block in encoder.blocks]
    assert all(isinstance(block.self_attn, MultiHeadAttention) for block in encoder.blocks)
    assert [type(r) for r in rotaries] == [StandardRotary, StandardRotary, NoRotary]
    assert rotaries[0].theta == 100.0
    out, _, _ = encoder(torch.randn(1, 30, 20), torch.tensor([30]))
    assert torch.isfinite(out).all()


def test_layer_groups_must_add_up_to_num_blocks():
    with pytest.raises(ValueError, match="num_blocks"):
        tiny_encoder(num_blocks=3, layers=[{"num": 2}])
    with pytest.raises(ValueError, match="input_layer"):
        tiny_encoder(input_layer="conv3d")


@pytest.mark.parametrize("abs_pos", [False, True])
def test_abs_pos_is_the_only_source_of_absolute_time(abs_pos: bool) -> None:
    """Constant input: rotary-only layers give the same vector at every frame; abs_pos makes them differ."""
    torch.manual_seed(0)
    encoder = EchoEncoder(input_size=20, output_size=16, attention_heads=2, linear_units=32, num_blocks=2,
                          abs_pos=abs_pos).eval()
    out, _, _ = encoder(torch.ones(1, 64, 20), torch.tensor([64]))
    spread = (out[0] - out[0].mean(dim=0)).abs().max().item()
    assert (spread > 1e-3) == abs_pos
