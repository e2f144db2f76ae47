"""EchoEncoder with the rotary family: f0 plumbing into pitch-aware layers, and YAML layer mixes through ESPnet."""
import pytest
import torch

from echo_plugin.asr.encoder.echo_encoder import EchoEncoder
from echo_plugin.nn.rotary import F0Track, GivensRotary, LearnedRotary, PitchAwareRotary, QuaternionRotary

PITCH = {"type": "pitch_aware", "conf": {"angle_source": "phase", "radii": True, "radius_floor": 0.2,
                                         "pitch_bias": 1.0}}  # fmt: skip
MIXED = [{"num": 2, "rotary": PITCH}, {"num": 1, "rotary": {"type": "learned", "conf": {"max_positions": 64}}}]


def tiny_encoder(**conf) -> EchoEncoder:
    torch.manual_seed(0)
    conf = {"output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 3, **conf}
    return EchoEncoder(input_size=20, **conf)


def speech_and_f0(batch: int = 2, frames: int = 41):
    torch.manual_seed(1)
    f0 = 120 + 80 * torch.rand(batch, frames)
    f0[:, 10:17] = 0.0  # an unvoiced stretch
    return torch.randn(batch, frames, 20), torch.tensor([frames, frames - 8]), f0


def test_pitch_aware_layers_run_forward_backward_with_f0():
    encoder = tiny_encoder(layers=MIXED).train()
    kinds = [type(b.self_attn.rotary) for b in encoder.blocks]
    assert kinds == [PitchAwareRotary, PitchAwareRotary, LearnedRotary]
    assert encoder.needs_f0 and not tiny_encoder().needs_f0
    xs, ilens, f0 = speech_and_f0()
    out, olens, _ = encoder(xs, ilens, f0=f0)
    assert out.shape == (2, int(olens.max()), 16) and torch.isfinite(out).all()
    out.pow(2).sum().backward()
    grads = [p.grad for p in encoder.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert encoder.blocks[2].self_attn.rotary.bias.grad.abs().sum() > 0


def test_pitch_aware_layers_without_f0_error_clearly():
    encoder = tiny_encoder(layers=MIXED).eval()
    xs, ilens, f0 = speech_and_f0()
    with pytest.raises(ValueError, match="needs f0.*EchoEncoder.forward"):
        encoder(xs, ilens)
    with pytest.raises(ValueError, match="f0 must be"):
        encoder(xs, ilens, f0=f0[:, :-1])


@pytest.mark.parametrize("input_layer, factor", [("conv2d", 4), ("conv2d6", 6), ("linear", 1)])
def test_f0_is_resampled_to_the_layer_frames_with_its_frame_period(monkeypatch, input_layer, factor):
    layers = [{"num": 3, "rotary": PITCH}]
    encoder = tiny_encoder(input_layer=input_layer, frame_shift=0.005, layers=layers).eval()
    assert encoder.frame_period == pytest.approx(0.005 * factor)
    seen = []
    rotary = encoder.blocks[0].self_attn.rotary
    original = rotary.rotate

    def spy(x, positions, f0=None):
        seen.append((x.shape[-2], f0))
        return original(x, positions, f0)

    monkeypatch.setattr(rotary, "rotate", spy)
    xs, ilens, _ = speech_and_f0()
    out, _, _ = encoder(xs, ilens, f0=torch.full((2, 41), 150.0))
    (frames, track), _ = seen  # queries, then keys
    assert isinstance(track, F0Track) and track.frame_period == pytest.approx(0.005 * factor)
    assert frames == out.shape[1] and track.hz.shape == (2, frames)
    torch.testing.assert_close(track.hz, torch.full((2, frames), 150.0))


def test_unvoiced_f0_equals_position_rotary_encoder():
    """pitch_aware with f0 = 0 and no radii is its base: the whole encoder matches a standard-rotary one."""
    pitch = tiny_encoder(layers=[{"num": 3, "rotary": {"type": "pitch_aware", "conf": {"base": "standard"}}}])
    plain = tiny_encoder(layers=[{"num": 3, "rotary": "standard"}])
    plain.load_state_dict(pitch.state_dict())
    xs, ilens, f0 = speech_and_f0()
    expected, _, _ = plain.eval()(xs, ilens)
    out, _, _ = pitch.eval()(xs, ilens, f0=torch.zeros_like(f0))
    torch.testing.assert_close(out, expected)
    voiced, _, _ = pitch(xs, ilens, f0=f0)
    assert not torch.allclose(voiced, expected)


YAML_ENCODER_CONF = (
    "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 4, input_layer: conv2d,"
    " frame_shift: 0.01, layers: ["
    "{num: 2, rotary: {type: learned, conf: {theta: 1000.0, max_positions: 256}}},"
    " {num: 1, rotary: {type: quaternion, conf: {groups: 2, rot_scale: 4.0}}},"
    " {num: 1, rotary: {type: mel, conf: {max_hz: 4000.0}},"
    " attention: {type: standard, conf: {rotary_k: {type: givens, conf: {theta: -6000.0, rot_count: 2}}}}}]}"
)


def test_espnet_builds_a_per_layer_rotary_mix_from_yaml(tmp_path):
    from test.asr.espnet_build import build_asr

    tokens = ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]
    decoder_conf = "{attention_heads: 2, linear_units: 32, num_blocks: 1}"
    _, _, model = build_asr(tmp_path, YAML_ENCODER_CONF, decoder_conf, tokens)
    rotaries = [block.self_attn.rotary for block in model.encoder.blocks]
    assert [type(r) for r in rotaries[:3]] == [LearnedRotary, LearnedRotary, QuaternionRotary]
    assert isinstance(model.encoder.blocks[3].self_attn.key_rotary, GivensRotary)
    assert rotaries[0].max_positions == 256 and rotaries[2].rot_scale == 4.0
    speech = torch.randn(2, 40, 20)
    text = torch.tensor([[2, 3, 4], [3, 2, -1]])
    lengths, text_lengths = torch.tensor([40, 31]), torch.tensor([3, 2])
    loss, _, _ = model(speech=speech, speech_lengths=lengths, text=text, text_lengths=text_lengths)
    assert torch.isfinite(loss)
    loss.backward()
    for name in ("encoder.blocks.0.self_attn.rotary.bias", "encoder.blocks.2.self_attn.rotary.down"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name
