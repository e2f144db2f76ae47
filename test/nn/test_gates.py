"""GATE modules: each formula against an explicit computation, ``none`` = ungated bit for bit,
gradients into gate parameters, and the per-layer ``gate`` spec in EchoEncoder / EchoDecoder."""
import math

import pytest
import torch
import torch.nn.functional as F

from echo_plugin.asr.decoder.echo_decoder import EchoDecoder
from echo_plugin.asr.encoder.echo_encoder import EchoEncoder
from echo_plugin.catalog import GATE
from echo_plugin.nn.attention import MultiHeadAttention
from echo_plugin.nn.gates import ContextGate, Gate, MemoryGate, MLPGate, NoGate, TypeGate
from echo_plugin.nn.layers import DecoderInputs, DecoderLayer, EncoderLayer, FeedForward

D = 8
GATED = ["mlp_gate", "t_gate", "m_gate", "c_gate"]


def inputs(batch: int = 2, frames: int = 5):
    torch.manual_seed(3)
    return torch.randn(batch, frames, D), torch.randn(batch, frames, D), torch.randn(batch, frames, D) * 7


def build(name: str, **conf) -> Gate:
    torch.manual_seed(0)
    return GATE.build({"type": name, "conf": conf}, d_model=D)


def test_registry_holds_every_gate():
    assert GATE.names() == ["additive", "c_gate", "m_gate", "mlp_gate", "none", "t_gate"]
    assert isinstance(GATE.build("none", d_model=D), NoGate)
    with pytest.raises(ValueError, match="may not set"):
        GATE.build({"type": "t_gate", "conf": {"d_model": 4}}, d_model=D)
    with pytest.raises(TypeError):
        GATE.build({"type": "t_gate", "conf": {"num_typs": 4}}, d_model=D)
    with pytest.raises(ValueError, match="m_gate: mem_size must be >= 1, got 0"):
        GATE.build({"type": "m_gate", "conf": {"mem_size": 0}}, d_model=D)
    with pytest.raises(ValueError, match="t_gate: num_types must be >= 1, got -1"):
        GATE.build({"type": "t_gate", "conf": {"num_types": -1}}, d_model=D)


@pytest.mark.parametrize("per_channel", [False, True])
def test_mlp_gate_formula(per_channel):
    gate = build("mlp_gate", per_channel=per_channel)
    x, update, _ = inputs()
    g = torch.sigmoid(x @ gate.proj.weight.T + gate.proj.bias)
    assert g.shape == (2, 5, D if per_channel else 1)
    torch.testing.assert_close(gate(x, update), g * update)


@pytest.mark.parametrize("per_channel", [False, True])
def test_t_gate_formula(per_channel):
    gate = build("t_gate", num_types=3, per_channel=per_channel)
    x, update, _ = inputs()
    G = D if per_channel else 1
    probs = torch.softmax(x @ gate.classifier.weight.T + gate.classifier.bias, dim=-1)  # (B, T, K)
    weight, bias = gate.gates.weight.view(3, G, D), gate.gates.bias.view(3, G)
    g = sum(probs[..., k : k + 1] * torch.sigmoid(x @ weight[k].T + bias[k]) for k in range(3))
    assert g.shape == (2, 5, G)
    torch.testing.assert_close(gate.value(x), g)
    torch.testing.assert_close(gate(x, update), g * update)
    torch.testing.assert_close(gate.type_probs(x).sum(-1), torch.ones(2, 5))


@pytest.mark.parametrize("per_channel", [False, True])
def test_m_gate_formula(per_channel):
    gate = build("m_gate", mem_size=6, per_channel=per_channel)
    x, update, _ = inputs()
    attention = torch.softmax(x @ gate.mem_key.T / math.sqrt(D), dim=-1)  # (B, T, M)
    lin1, lin2 = gate.direct[0], gate.direct[2]
    direct = torch.sigmoid(F.silu(x @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias)
    g = 0.5 * (torch.sigmoid(attention @ gate.mem_value) + direct)
    assert gate.mem_key.shape == (6, D) and lin1.out_features == D // 2
    assert g.shape == (2, 5, D if per_channel else 1)
    torch.testing.assert_close(gate(x, update), g * update)


@pytest.mark.parametrize("per_channel", [False, True])
def test_c_gate_formula_with_and_without_aux(per_channel):
    gate = build("c_gate", per_channel=per_channel)
    x, update, aux = inputs()
    from_x = x @ gate.from_x.weight.T + gate.from_x.bias
    with_aux = torch.sigmoid(from_x + F.layer_norm(aux, (D,)) @ gate.from_aux.weight.T)
    torch.testing.assert_close(gate(x, update, aux), with_aux * update)
    torch.testing.assert_close(gate(x, update), torch.sigmoid(from_x) * update)
    with pytest.raises(ValueError, match="aux must be"):
        gate(x, update, aux[:, :-1])


def test_c_gate_without_use_aux_ignores_aux_and_has_no_aux_weights():
    gate = build("c_gate", use_aux=False)
    x, update, aux = inputs()
    assert gate.from_aux is None and not any("aux" in name for name, _ in gate.named_parameters())
    torch.testing.assert_close(gate(x, update, aux), gate(x, update))


@pytest.mark.parametrize("name", GATED)
def test_gate_values_lie_in_unit_interval_and_ignore_other_frames(name):
    gate = build(name)
    x, update, aux = inputs()
    g = gate.value(x, aux)
    assert ((g > 0) & (g < 1)).all()
    changed = x.clone()
    changed[:, 3:] += 5.0  # a gate is per frame: other frames do not move frames 0..2
    torch.testing.assert_close(gate.value(changed, aux)[:, :3], g[:, :3])


def test_none_gate_is_the_identity_without_parameters():
    gate = GATE.build("none", d_model=D)
    x, update, aux = inputs()
    assert gate(x, update, aux) is update
    assert list(gate.parameters()) == [] and gate.state_dict() == {}


def encoder_layer(gate=None) -> EncoderLayer:
    torch.manual_seed(0)
    attention = MultiHeadAttention(D, 2, rotary="standard")
    return EncoderLayer(attention, FeedForward(D, 16), D, dropout=0.0, gate=gate).eval()


def decoder_layer(gate=None) -> DecoderLayer:
    torch.manual_seed(0)
    self_attn = MultiHeadAttention(D, 2, rotary="standard")
    cross_attn = MultiHeadAttention(D, 2, rotary="none")
    return DecoderLayer(self_attn, cross_attn, FeedForward(D, 16), D, dropout=0.0, gate=gate).eval()


def test_none_gate_encoder_layer_equals_the_ungated_layer_bit_for_bit():
    default, explicit = encoder_layer(), encoder_layer(GATE.build("none", d_model=D))
    assert isinstance(default.gate, NoGate)
    assert default.state_dict().keys() == explicit.state_dict().keys()
    assert not any(".gate" in key or key.startswith("gate") for key in default.state_dict())
    x, _, aux = inputs()
    keep = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    positions = torch.arange(5)
    with torch.no_grad():
        attended, _ = default.self_attn(
            default.attn_norm(x), key_padding_mask=keep, q_positions=positions, k_positions=positions
        )
        h = x + attended
        reference = h + default.feed_forward(default.ff_norm(h))  # the pre-gate EncoderLayer
        assert torch.equal(default(x, keep, positions), reference)
        assert torch.equal(explicit(x, keep, positions, aux=aux), reference)


def test_none_gate_decoder_layer_equals_the_ungated_layer_bit_for_bit():
    layer = decoder_layer(GATE.build("none", d_model=D))
    x, memory, _ = inputs()
    memory_mask = torch.tensor([[True] * 5, [True] * 4 + [False]])
    with torch.no_grad():
        attended, _ = layer.self_attn(layer.self_norm(x), key_padding_mask=None, causal=True)
        h = x + attended
        context, _ = layer.cross_attn(layer.cross_norm(h), memory, key_padding_mask=memory_mask)
        h = h + context
        reference = h + layer.feed_forward(layer.ff_norm(h))
        out, _, _ = layer(x, DecoderInputs(memory, memory_mask))
    assert torch.equal(out, reference)


@pytest.mark.parametrize("name", GATED)
def test_gated_encoder_layer_wraps_the_feed_forward_update(name):
    layer = encoder_layer(build(name))
    plain = encoder_layer()
    x, _, aux = inputs()
    positions = torch.arange(5)
    with torch.no_grad():
        h = x + layer.self_attn(layer.attn_norm(x), key_padding_mask=None, q_positions=positions,
                                k_positions=positions)[0]  # fmt: skip
        normed = layer.ff_norm(h)
        expected = h + layer.gate.value(normed, aux) * layer.feed_forward(normed)
        torch.testing.assert_close(layer(x, None, positions, aux=aux), expected)
        assert not torch.allclose(layer(x, None, positions, aux=aux), plain(x, None, positions))


@pytest.mark.parametrize("name", GATED)
def test_gradients_reach_every_gate_parameter(name):
    x, memory, aux = inputs()
    enc = encoder_layer(build(name)).train()
    enc(x, None, torch.arange(5), aux=aux).square().sum().backward()
    dec = decoder_layer(build(name)).train()
    dec(x, DecoderInputs(memory))[0].square().sum().backward()
    for layer in (enc, dec):
        params = dict(layer.gate.named_parameters())
        assert params
        for pname, param in params.items():
            assert param.grad is not None and param.grad.abs().sum() > 0, (name, pname)


ENCODER_GATES = [
    {"num": 1, "gate": "t_gate"},
    {"num": 1, "gate": {"type": "m_gate", "conf": {"mem_size": 8}}},
    {"num": 1, "gate": {"type": "c_gate", "conf": {"per_channel": True}}},
    {"num": 1, "gate": "mlp_gate"},
    {"num": 1},
]


def tiny_encoder(**conf) -> EchoEncoder:
    torch.manual_seed(0)
    conf = {"output_size": D, "attention_heads": 2, "linear_units": 16, "num_blocks": 2, **conf}
    return EchoEncoder(input_size=12, **conf).eval()


def test_encoder_builds_one_gate_per_layer_from_yaml_specs():
    encoder = tiny_encoder(num_blocks=5, layers=ENCODER_GATES)
    kinds = [type(block.gate) for block in encoder.blocks]
    assert kinds == [TypeGate, MemoryGate, ContextGate, MLPGate, NoGate]
    assert encoder.blocks[1].gate.mem_key.shape == (8, D) and encoder.blocks[2].gate.gate_dim == D
    xs = torch.randn(2, 30, 12)
    out, olens, _ = encoder(xs, torch.tensor([30, 21]))
    assert out.shape[-1] == D and torch.isfinite(out).all()


def test_c_gate_in_the_encoder_reads_the_input_layer_output(monkeypatch):
    encoder = tiny_encoder(input_layer="linear", layers=[{"num": 2, "gate": "c_gate"}])
    seen = []
    gate = encoder.blocks[1].gate
    original = gate.value
    monkeypatch.setattr(gate, "value", lambda x, aux=None: seen.append(aux) or original(x, aux))
    embedded = []
    encoder.embed.register_forward_hook(lambda module, args, out: embedded.append(out[0]))
    encoder(torch.randn(2, 10, 12), torch.tensor([10, 7]))
    assert torch.equal(seen[0], embedded[0])


def test_none_gate_keeps_encoder_and_decoder_checkpoints_loadable_strictly():
    old = tiny_encoder(layers=[{"num": 2, "rotary": "standard"}])
    new = tiny_encoder(layers=[{"num": 2, "rotary": "standard", "gate": "none"}])
    assert old.state_dict().keys() == new.state_dict().keys()
    assert not any("gate" in key for key in old.state_dict())
    new.load_state_dict(old.state_dict(), strict=True)
    xs, ilens = torch.randn(2, 30, 12), torch.tensor([30, 22])
    assert torch.equal(old(xs, ilens)[0], new(xs, ilens)[0])

    torch.manual_seed(0)
    dec_old = EchoDecoder(11, D, attention_heads=2, linear_units=16, num_blocks=2).eval()
    torch.manual_seed(0)
    dec_new = EchoDecoder(11, D, attention_heads=2, linear_units=16, num_blocks=2,
                          layers=[{"num": 2, "gate": "none"}]).eval()  # fmt: skip
    assert dec_old.state_dict().keys() == dec_new.state_dict().keys()
    assert not any("gate" in key for key in dec_old.state_dict())
    hs, ys = torch.randn(2, 7, D), torch.randint(0, 11, (2, 4))
    assert torch.equal(dec_old(hs, torch.tensor([7, 5]), ys, torch.tensor([4, 3]))[0],
                       dec_new(hs, torch.tensor([7, 5]), ys, torch.tensor([4, 3]))[0])  # fmt: skip


def test_gated_decoder_incremental_scoring_equals_full_forward():
    """c_gate reads the cross-attention output, also on the cached beam-search path."""
    torch.manual_seed(0)
    layers = [{"num": 1, "gate": "c_gate"}, {"num": 1, "gate": "t_gate"}]
    decoder = EchoDecoder(11, D, attention_heads=2, linear_units=16, num_blocks=2, layers=layers).eval()
    assert [type(b.gate) for b in decoder.blocks] == [ContextGate, TypeGate]
    torch.manual_seed(1)
    xs, ys = torch.randn(2, 6, D), torch.randint(0, 11, (2, 5))
    with torch.no_grad():
        logp, states = decoder.batch_score(ys[:, :2], [None, None], xs)
        for length in range(2, 6):
            if length > 2:
                logp, states = decoder.batch_score(ys[:, :length], states, xs)
            logits, _ = decoder(xs, torch.full((2,), 6), ys[:, :length], torch.full((2,), length))
            torch.testing.assert_close(logp, logits[:, -1].log_softmax(-1), rtol=1e-4, atol=1e-5)
