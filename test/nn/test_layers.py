"""Layer building blocks: norms, activations and per-group layer specs."""
import pytest
import torch
from torch import nn

from echo_plugin.nn.attention import MultiHeadAttention
from echo_plugin.nn.layers import EncoderLayer, FeedForward, layer_specs, make_norm

DEFAULTS = {"attention": "standard", "rotary": "standard"}


def test_layer_specs_expand_groups_in_order():
    groups = [{"num": 2, "rotary": "none"}, {"num": 1, "attention": {"type": "standard", "conf": {}}}]
    specs = layer_specs(groups, 3, DEFAULTS)
    assert specs == [
        {"attention": "standard", "rotary": "none"},
        {"attention": "standard", "rotary": "none"},
        {"attention": {"type": "standard", "conf": {}}, "rotary": "standard"},
    ]
    assert layer_specs(None, 2, DEFAULTS) == [DEFAULTS, DEFAULTS]


@pytest.mark.parametrize(
    "groups", [[{"num": 2}], [{"num": 4}], [{"attention": "standard"}], [{"num": 3, "rotery": "none"}]]
)
def test_layer_specs_reject_bad_groups(groups):
    with pytest.raises(ValueError):
        layer_specs(groups, 3, DEFAULTS)


def test_norm_and_activation_lookup():
    assert isinstance(make_norm("rms_norm", 8), nn.RMSNorm)
    assert isinstance(make_norm("layer_norm", 8), nn.LayerNorm)
    with pytest.raises(ValueError):
        make_norm("batch_norm", 8)
    with pytest.raises(ValueError):
        FeedForward(8, 16, activation="tanhh")


def test_encoder_layer_ignores_padded_keys():
    torch.manual_seed(0)
    attention = MultiHeadAttention(8, 2, rotary="standard")
    layer = EncoderLayer(attention, FeedForward(8, 16, activation="gelu"), 8, dropout=0.0, norm="rms_norm")
    x = torch.randn(1, 6, 8)
    keep = torch.tensor([[True] * 4 + [False] * 2])
    out = layer(x, keep, torch.arange(6))
    x2 = x.clone()
    x2[:, 4:] = 50.0
    torch.testing.assert_close(layer(x2, keep, torch.arange(6))[:, :4], out[:, :4])
