"""Seed 04's own versions of what Echo reinterprets, each against a small reference written from the seed's code.

* ``pitch_aware_doc`` rotary vs the seed's ``rotary`` class (``theta_freqs``, ``forward``,
  ``_apply_radii``, ``apply_rotary``, ``pitch_bias``), transcribed below;
* the ``additive`` gate vs the seed's ``Residual`` (``fx = x + ex + dx``) with its ``t_gate``;
* curiosity with ``aux_source: features`` vs the seed's ``curiosity.forward(x, xa)``.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from echo_plugin.asr.encoder.echo_encoder import EchoEncoder
from echo_plugin.catalog import ATTENTION, GATE, ROTARY
from echo_plugin.nn.attention import MultiHeadAttention
from echo_plugin.nn.gates import AdditiveGate, TypeGate
from echo_plugin.nn.layers import EncoderLayer, FeedForward
from echo_plugin.nn.rotary import DocPitchAwareRotary, F0Track

PERIOD = 0.04
F0 = torch.tensor([0.0, 0.0, 283.7590, 260.6043, 257.3410, 0.0, 220.4299, 254.7619])  # the seed's radius print


# ---------------------------------------------------------------- seed 04's rotary, transcribed (batch 1)


def seed_theta_freqs(theta: torch.Tensor, head_dim: int) -> torch.Tensor:
    if theta.dim() == 0:
        theta = theta.unsqueeze(0)
    freq = (theta.unsqueeze(-1) / 220.0) * 700 * (
        torch.pow(10, torch.linspace(0, 2595 * torch.log10(torch.tensor(1 + 8000 / 700)),
                  head_dim // 2, device=theta.device, dtype=theta.dtype) / 2595) - 1) / 1000
    return freq


def seed_forward(ctx: int, f0, theta: torch.Tensor, head_dim: int, radii: bool) -> torch.Tensor:
    if f0 is not None:
        theta = f0 + theta
    freqs = seed_theta_freqs(theta, head_dim)
    t = torch.arange(ctx, dtype=torch.float32)
    freqs = t[:, None] * freqs
    if radii and f0 is not None:
        freqs = torch.polar(f0.unsqueeze(-1), freqs)
    else:
        freqs = torch.polar(torch.ones_like(freqs), freqs)
    return freqs.unsqueeze(0)


def seed_apply_rotary(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    x1 = x[..., :freqs.shape[-1] * 2]
    x2 = x[..., freqs.shape[-1] * 2:]
    orig_shape = x1.shape
    x1 = x1.float().reshape(*x1.shape[:-1], -1, 2).contiguous()
    x1 = torch.view_as_complex(x1) * freqs
    x1 = torch.view_as_real(x1).flatten(-2)
    x1 = x1.view(orig_shape)
    return torch.cat([x1.type_as(x), x2], dim=-1)


def seed_pitch_bias(f0: torch.Tensor) -> torch.Tensor:
    f0_flat = f0.squeeze().float()
    f0_norm = (f0_flat - f0_flat.mean()) / (f0_flat.std() + 1e-8)
    f0_sim = torch.exp(-torch.cdist(f0_norm.unsqueeze(1), f0_norm.unsqueeze(1)))
    return f0_sim.unsqueeze(0).unsqueeze(0)


def doc_rotary(**conf) -> DocPitchAwareRotary:
    return ROTARY.build({"type": "pitch_aware_doc", "conf": conf}, head_dim=12)


def sample_x(batch: int = 1, heads: int = 2, length: int = 8, dim: int = 12, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(batch, heads, length, dim)


@pytest.mark.parametrize("radii", [True, False])
def test_doc_rotary_equals_the_seed_code_with_f0(radii: bool) -> None:
    rot = doc_rotary(radii=radii)
    assert isinstance(rot, DocPitchAwareRotary) and rot.needs_f0
    x = sample_x()
    freqs = seed_forward(8, F0, torch.tensor(10000.0), 12, radii)
    expected = seed_apply_rotary(x, freqs)
    out = rot.rotate(x, torch.arange(8), F0Track(F0[None], PERIOD))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-4)
    # numbers, not only shapes: pair 0 never turns (the ladder starts at 0 Hz), unvoiced radii are 0
    torch.testing.assert_close(out[..., 2:4, :2], x[..., 2:4, :2] * (F0[2:4, None] if radii else 1.0))
    if radii:
        assert torch.equal(out[..., :2, :], torch.zeros_like(out[..., :2, :]))
    # the angle of pair i at frame t: t * (10000 + f0_t) / 220 * 0.7 * (10^(m_i / 2595) - 1)
    mel = torch.linspace(0, 2595 * math.log10(1 + 8000 / 700), 6, dtype=torch.float64)
    angle = 3 * (10000 + F0[3].double()) / 220 * 0.7 * (10 ** (mel[5] / 2595) - 1)
    pair = torch.complex(x[0, 0, 3, 10].double(), x[0, 0, 3, 11].double())
    radius = float(F0[3]) if radii else 1.0
    turned = pair * torch.polar(torch.tensor(radius, dtype=torch.float64), angle)
    # float32 angles near 1100 rad carry ~1e-4 rad of rounding: compare to that, times the radius
    torch.testing.assert_close(torch.complex(out[0, 0, 3, 10], out[0, 0, 3, 11]).to(torch.complex128), turned,
                               rtol=0, atol=1e-3 * radius)


def test_doc_rotary_without_f0_is_the_seeds_theta_alone_and_radius_ref_scales() -> None:
    rot = doc_rotary()
    x = sample_x()
    expected = seed_apply_rotary(x, seed_forward(8, None, torch.tensor(10000.0), 12, True))
    torch.testing.assert_close(rot.rotate(x, torch.arange(8)), expected, rtol=1e-5, atol=1e-4)
    assert rot.score_bias(None, None) is None
    scaled = doc_rotary(radius_ref=220.0).rotate(x, torch.arange(8), F0Track(F0[None], PERIOD))
    unit = doc_rotary(radii=False).rotate(x, torch.arange(8), F0Track(F0[None], PERIOD))
    torch.testing.assert_close(scaled, unit * (F0 / 220.0)[:, None], rtol=1e-5, atol=1e-5)


def test_doc_rotary_theta_is_learned() -> None:
    rot = doc_rotary()
    assert [name for name, _ in rot.named_parameters()] == ["theta"] and float(rot.theta.detach()) == 10000.0
    rot.rotate(sample_x(), torch.arange(8), F0Track(F0[None], PERIOD)).square().sum().backward()
    assert rot.theta.grad is not None and rot.theta.grad.abs() > 0
    frozen = doc_rotary(learn_theta=False, theta=5000.0)
    assert not frozen.theta.requires_grad and float(frozen.theta) == 5000.0


def test_doc_pitch_bias_equals_the_seed_code_and_ignores_padding() -> None:
    rot = doc_rotary()
    bias = rot.score_bias(F0Track(F0[None], PERIOD), F0Track(F0[None], PERIOD))
    torch.testing.assert_close(bias, seed_pitch_bias(F0))
    assert torch.allclose(bias.diagonal(dim1=-2, dim2=-1), torch.ones(8))  # exp(0) on the diagonal
    # a batch: the shorter utterance's statistics come from its own 5 frames, not from the padding
    short = torch.tensor([190.0, 0.0, 210.0, 230.0, 0.0])
    hz = torch.stack([F0, F.pad(short, (0, 3))])
    valid = torch.tensor([[True] * 8, [True] * 5 + [False] * 3])
    batch = rot.score_bias(F0Track(hz, PERIOD, valid), F0Track(hz, PERIOD, valid))
    assert batch.shape == (2, 1, 8, 8)
    torch.testing.assert_close(batch[1:, :, :5, :5], seed_pitch_bias(short))
    torch.testing.assert_close(batch[:1], seed_pitch_bias(F0))
    assert doc_rotary(pitch_bias=0.0).score_bias(F0Track(F0[None], PERIOD), F0Track(F0[None], PERIOD)) is None
    torch.testing.assert_close(
        doc_rotary(pitch_bias=2.5).score_bias(F0Track(F0[None], PERIOD), F0Track(F0[None], PERIOD)), 2.5 * bias
    )


def test_doc_rotary_in_attention_equals_the_seeds_multihead() -> None:
    """The seed's MultiheadA scores: (q s) @ (k s)^T + pitch_bias, s = dh ** -0.25, both rotated (radii on)."""
    torch.manual_seed(0)
    attn = MultiHeadAttention(24, 2, rotary={"type": "pitch_aware_doc", "conf": {"radius_ref": 220.0}}).eval()
    x = torch.randn(1, 8, 24)
    out, _ = attn(x, f0=F0Track(F0[None], PERIOD))
    split = attn._split_heads
    # the seed's factors with its radius f0 scaled by 1 / 220 (raw Hz radii saturate the softmax)
    freqs = seed_forward(8, F0, torch.tensor(10000.0), 12, False) * (F0 / 220.0)[:, None]
    q = seed_apply_rotary(split(attn.query(x)), freqs)
    k = seed_apply_rotary(split(attn.key(x)), freqs)
    v = split(attn.value(x))
    scale = 12 ** -0.25
    qk = (q * scale) @ (k * scale).transpose(-1, -2) + seed_pitch_bias(F0)
    expected = attn.out((qk.softmax(-1) @ v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_doc_rotary_refuses_bad_options() -> None:
    with pytest.raises(ValueError, match="radius_ref > 0"):
        doc_rotary(radius_ref=0.0)
    with pytest.raises(ValueError, match="head_dim must be >= 4"):
        ROTARY.build("pitch_aware_doc", head_dim=2)


# ---------------------------------------------------------------- seed 04's Residual: the gate value added


def seed_t_gate(gate: TypeGate, x: torch.Tensor) -> torch.Tensor:
    """The seed's t_gate, one Linear(dims, 1) + Sigmoid per type, written out per type."""
    type_probs = torch.softmax(x @ gate.classifier.weight.t() + gate.classifier.bias, dim=-1)
    gates = torch.stack(
        [torch.sigmoid(x @ gate.gates.weight[k] + gate.gates.bias[k])[..., None] for k in range(gate.num_types)],
        dim=-1,
    )  # (B, T, 1, K)
    return torch.sum(gates * type_probs.unsqueeze(2), dim=-1)


def test_additive_gate_adds_the_seeds_t_gate_value_to_the_update() -> None:
    torch.manual_seed(0)
    gate = GATE.build("additive", d_model=16)
    assert isinstance(gate, AdditiveGate) and isinstance(gate.inner, TypeGate) and gate.inner.num_types == 8
    x, update = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    g = seed_t_gate(gate.inner, x)
    assert g.shape == (2, 5, 1) and bool((g > 0).all() and (g < 1).all())
    torch.testing.assert_close(gate(x, update), update + g)
    torch.testing.assert_close(gate(x, torch.zeros_like(update)), g.expand(2, 5, 16))  # not g * update
    # any inner gate with a value, per channel too
    mlp = GATE.build({"type": "additive", "conf": {"gate": {"type": "mlp_gate", "conf": {"per_channel": True}}}},
                     d_model=16)
    torch.testing.assert_close(mlp(x, update), update + torch.sigmoid(mlp.inner.proj(x)))
    with pytest.raises(ValueError, match="inner gate must be a gate with a value, not NoGate"):
        GATE.build({"type": "additive", "conf": {"gate": "none"}}, d_model=16)


def test_encoder_layer_with_additive_gate_is_x_plus_attention_plus_ff_plus_g() -> None:
    torch.manual_seed(0)
    attn = ATTENTION.build("standard", d_model=16, n_heads=2, rotary="standard")
    layer = EncoderLayer(attn, FeedForward(16, 32), 16, dropout=0.0, gate=GATE.build("additive", d_model=16)).eval()
    x = torch.randn(2, 5, 16)
    positions = torch.arange(5)
    h = x + attn(layer.attn_norm(x), q_positions=positions, k_positions=positions)[0]
    n = layer.ff_norm(h)
    expected = h + layer.feed_forward(n) + seed_t_gate(layer.gate.inner, n)
    torch.testing.assert_close(layer(x, None, positions), expected)


# ---------------------------------------------------------------- seed 04's curiosity: a separate auxiliary stream


D, H = 16, 2


def stream_curiosity(rotary: str = "none") -> torch.nn.Module:
    torch.manual_seed(0)
    spec = {"type": "curiosity", "conf": {"score": "dot", "aux_source": "features"}}
    module = ATTENTION.build(spec, d_model=D, n_heads=H, rotary=rotary).double().eval()
    with torch.no_grad():
        module.gate.copy_(torch.tensor([-0.7, 1.3]))
    return module


def seed_curiosity(module, x: torch.Tensor, xa: torch.Tensor, keep=None) -> torch.Tensor:
    """The seed's curiosity.forward(x, xa) with the module's weights (its qkv = query/key/value,
    its qkv_aux = aux_key/aux_value on LN(xa)); padding hidden in both streams (keep, True = real)."""
    def split(t):
        b, n, _ = t.shape
        return t.view(b, n, H, D // H).transpose(1, 2)

    xa = F.layer_norm(xa, (D,))
    q, k, v = split(module.query(x)), split(module.key(x)), split(module.value(x))
    ka, va = split(module.aux_key(xa)), split(module.aux_value(xa))
    dh = D // H
    dots = (q @ k.transpose(-2, -1)) / dh**0.5
    dots_aux = (q @ ka.transpose(-2, -1)) / dh**0.5
    if keep is not None:
        hidden = ~keep[:, None, None, :]
        dots, dots_aux = dots.masked_fill(hidden, -9e15), dots_aux.masked_fill(hidden, -9e15)
    h_main = dots.softmax(-1) @ v
    h_aux = dots_aux.softmax(-1) @ va
    g = torch.sigmoid(module.gate).view(1, -1, 1, 1)
    return module.out((h_main * (1 - g) + h_aux * g).transpose(1, 2).contiguous().view(x.shape[0], -1, D))


def test_curiosity_features_stream_equals_the_seeds_curiosity() -> None:
    module = stream_curiosity()
    assert module.uses_aux_stream
    torch.manual_seed(1)
    x, xa = torch.randn(2, 7, D, dtype=torch.float64), 5.0 * torch.randn(2, 7, D, dtype=torch.float64)
    out, _ = module(x, aux_stream=xa)
    torch.testing.assert_close(out, seed_curiosity(module, x, xa))
    keep = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    out, _ = module(x, key_padding_mask=keep, aux_stream=xa)
    torch.testing.assert_close(out, seed_curiosity(module, x, xa, keep))
    # the auxiliary stream is read: another xa, another output (a constant shift of xa is normalised away)
    assert not torch.allclose(module(x, aux_stream=torch.randn_like(xa))[0], module(x, aux_stream=xa)[0])
    torch.testing.assert_close(module(x, aux_stream=3.0 * xa + 1.0)[0], module(x, aux_stream=xa)[0])


def test_curiosity_features_rotates_aux_keys_and_keeps_the_state_dict() -> None:
    rotated = stream_curiosity(rotary="standard")
    own = ATTENTION.build({"type": "curiosity", "conf": {"score": "dot"}}, d_model=D, n_heads=H, rotary="standard")
    assert rotated.state_dict().keys() == own.state_dict().keys()  # LN without weights: no new parameters
    torch.manual_seed(1)
    x, xa = torch.randn(1, 6, D, dtype=torch.float64), torch.randn(1, 6, D, dtype=torch.float64)
    positions = torch.arange(6)
    split = rotated._split_heads
    ka = rotated.rotary.rotate(split(rotated.aux_key(F.layer_norm(xa, (D,)))), positions)
    q = rotated.rotary.rotate(split(rotated.query(x)), positions)
    k = rotated.rotary.rotate(split(rotated.key(x)), positions)
    main = ((q @ k.transpose(-1, -2)) / math.sqrt(D // H)).softmax(-1) @ split(rotated.value(x))
    va = split(rotated.aux_value(F.layer_norm(xa, (D,))))
    aux = ((q @ ka.transpose(-1, -2)) / math.sqrt(D // H)).softmax(-1) @ va
    g = torch.sigmoid(rotated.gate)[:, None, None]
    expected = rotated.out(rotated._merge_heads(main * (1 - g) + aux * g))
    torch.testing.assert_close(rotated(x, aux_stream=xa)[0], expected)


def test_curiosity_features_refuses_a_missing_stream_a_cache_and_other_frames() -> None:
    module = stream_curiosity()
    x = torch.randn(1, 4, D, dtype=torch.float64)
    with pytest.raises(ValueError, match="needs the layer's auxiliary stream"):
        module(x)
    _, cache = module(x, aux_stream=x)
    with pytest.raises(ValueError, match="keeps no KV cache"):
        module(x[:, :1], cache=cache, aux_stream=x[:, :1])
    with pytest.raises(ValueError, match="must be on the key frames"):
        module(x, aux_stream=x[:, :3])
    with pytest.raises(ValueError, match="aux_source must be one of"):
        ATTENTION.build({"type": "curiosity", "conf": {"aux_source": "memory"}}, d_model=D, n_heads=H)
    own = ATTENTION.build("curiosity", d_model=D, n_heads=H).double()
    assert not own.uses_aux_stream
    torch.testing.assert_close(own(x, aux_stream=x + 1.0)[0], own(x)[0])  # aux_source self ignores it


def test_encoder_layer_hands_its_aux_stream_to_curiosity_features() -> None:
    module = stream_curiosity().float()
    layer = EncoderLayer(module, FeedForward(D, 32), D, dropout=0.0).eval()
    x, features = torch.randn(2, 5, D), torch.randn(2, 5, D)
    out = layer(x, None, torch.arange(5), aux=features)
    h = x + seed_curiosity(module, layer.attn_norm(x), features)
    torch.testing.assert_close(out, h + layer.feed_forward(layer.ff_norm(h)))


# ---------------------------------------------------------------- inside EchoEncoder


def tiny_encoder(layers) -> EchoEncoder:
    torch.manual_seed(0)
    return EchoEncoder(input_size=20, output_size=D, attention_heads=H, linear_units=32, num_blocks=2,
                       input_layer="linear", layers=layers).eval()


def test_pitch_aware_doc_in_the_encoder_z_scores_each_utterance_over_its_own_frames() -> None:
    """A padded batch gives the shorter utterance what it gets alone: the encoder hands the pitch
    bias its real frames (F0Track.valid), so padding does not move the mean and std."""
    rotary = {"type": "pitch_aware_doc", "conf": {"radius_ref": 220.0}}
    encoder = tiny_encoder([{"num": 2, "rotary": rotary}])
    assert encoder.needs_f0
    torch.manual_seed(1)
    xs = torch.randn(2, 12, 20)
    f0 = 120 + 80 * torch.rand(2, 12)
    f0[:, 3:5] = 0.0
    f0[1, 8:] = 0.0  # the second utterance has 8 frames; its padding is unvoiced, as a model pads f0
    with torch.no_grad():
        out, olens, _ = encoder(xs, torch.tensor([12, 8]), f0=f0)
        alone, _, _ = encoder(xs[1:, :8], torch.tensor([8]), f0=f0[1:, :8])
    assert olens.tolist() == [12, 8]
    torch.testing.assert_close(out[1:, :8], alone, rtol=1e-5, atol=1e-5)


def test_curiosity_features_in_the_encoder_reads_the_input_layer_output(monkeypatch) -> None:
    attention = {"type": "curiosity", "conf": {"score": "dot", "aux_source": "features"}}
    encoder = tiny_encoder([{"num": 2, "attention": attention}])
    seen = []
    for block in encoder.blocks:
        original = block.self_attn.stream_keys_values

        def spy(call, original=original):
            seen.append(call.aux_stream)
            return original(call)

        monkeypatch.setattr(block.self_attn, "stream_keys_values", spy)
    torch.manual_seed(1)
    xs = torch.randn(2, 9, 20)
    with torch.no_grad():
        encoder(xs, torch.tensor([9, 6]))
        features, _ = encoder.embed(xs, None)
    assert len(seen) == 2
    for stream in seen:
        torch.testing.assert_close(stream, features)
