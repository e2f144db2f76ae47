"""The rotary family: each variant against a per-position loop, shared options, pitch helpers, attention."""
import math

import pytest
import torch

from echo_plugin.catalog import ROTARY
from echo_plugin.nn.attention import MultiHeadAttention, attend_reference
from echo_plugin.nn.rotary import (
    AxialRotary,
    F0Track,
    GivensRotary,
    LearnedRotary,
    MelRotary,
    PitchAwareRotary,
    QuaternionRotary,
    StandardRotary,
    accumulate_phase,
    grid_positions,
    resample_f0,
)
from echo_plugin.nn.rotary.pitch_aware import pitch_similarity_bias
from echo_plugin.nn.rotary.quaternion import quaternion_rotate

HEAD_DIM = 12
PERIOD = 0.04


def rope_ladder(theta: float, n: int, i: int) -> float:
    """Standard RoPE's angular frequency of pair i of n, written out: theta ** (-2i / (2n)), sign kept."""
    return math.copysign(abs(theta) ** (-2 * i / (2 * n)), theta)


def rotate_pairs(x: torch.Tensor, angle, radius=lambda b, t, i: 1.0, n_pairs: int = HEAD_DIM // 2) -> torch.Tensor:
    """x (B, H, T, D): pair (2i, 2i+1) of frame t of utterance b times radius * e^(j angle), one at a time."""
    out = x.clone()
    for b in range(x.shape[0]):
        for t in range(x.shape[2]):
            for i in range(n_pairs):
                a, c = angle(b, t, i), radius(b, t, i)
                x0, x1 = x[b, :, t, 2 * i], x[b, :, t, 2 * i + 1]
                out[b, :, t, 2 * i] = c * (x0 * math.cos(a) - x1 * math.sin(a))
                out[b, :, t, 2 * i + 1] = c * (x0 * math.sin(a) + x1 * math.cos(a))
    return out


def rodrigues(axis: torch.Tensor, angle: float) -> torch.Tensor:
    """3x3 rotation matrix I + sin(a) K + (1 - cos(a)) K^2 about unit ``axis``."""
    x, y, z = (float(v) for v in axis / axis.norm())
    k = torch.tensor([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return torch.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def sample_x(t_len: int = 5, batch: int = 2, heads: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(batch, heads, t_len, HEAD_DIM)


def sample_f0(batch: int = 2, t_len: int = 5) -> torch.Tensor:
    torch.manual_seed(3)
    f0 = 100 + 200 * torch.rand(batch, t_len)
    f0[0, 1] = 0.0
    f0[1, 3:] = 0.0
    return f0


def build(spec) -> torch.nn.Module:
    torch.manual_seed(0)
    return ROTARY.build(spec, head_dim=HEAD_DIM)


# --- every variant against a per-position loop -------------------------------------------------


def test_standard_options_match_loop():
    x, pos = sample_x(), torch.arange(5) + 3
    rot = build({"type": "standard", "conf": {"theta": -500.0, "rot_count": 4, "rot_scale": 2.5}})
    expected = rotate_pairs(x, lambda b, t, i: 2.5 * (t + 3) * rope_ladder(-500.0, 4, i), n_pairs=4)
    torch.testing.assert_close(rot.rotate(x, pos), expected)


def test_learned_matches_loop():
    rot = build({"type": "learned", "conf": {"theta": 100.0, "max_positions": 16}})
    assert isinstance(rot, LearnedRotary)
    with torch.no_grad():
        rot.bias.normal_()
        rot.inv_freq.mul_(1.3)
    w, bias = rot.inv_freq.detach(), rot.bias.detach()
    x = sample_x()
    positions = torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 11]])  # batched positions
    expected = rotate_pairs(
        x, lambda b, t, i: int(positions[b, t]) * float(w[i]) + float(bias[positions[b, t], i])
    )
    torch.testing.assert_close(rot.rotate(x, positions), expected)


def test_learned_trains_and_rejects_positions_outside_its_table():
    rot = build({"type": "learned", "conf": {"max_positions": 8}})
    x = sample_x()
    rot.rotate(x, torch.arange(5) + 2).sum().backward()
    assert rot.inv_freq.grad is not None
    assert rot.bias.grad[2:7].abs().sum() > 0 and rot.bias.grad[7].abs().sum() == 0
    with pytest.raises(ValueError, match="max_positions"):
        rot.rotate(x, torch.arange(5) + 4)


def test_mel_matches_loop_and_documented_mapping():
    rot = build({"type": "mel", "conf": {"min_hz": 50.0, "max_hz": 4000.0}})
    assert isinstance(rot, MelRotary)
    mel = lambda f: 2595 * math.log10(1 + f / 700)  # noqa: E731
    n = HEAD_DIM // 2

    def omega(i: int) -> float:
        m = mel(50.0) + i / (n - 1) * (mel(4000.0) - mel(50.0))
        return math.pi * 700 * (10 ** (m / 2595) - 1) / 4000.0

    assert omega(n - 1) == pytest.approx(math.pi)
    x = sample_x()
    torch.testing.assert_close(rot.rotate(x, torch.arange(5)), rotate_pairs(x, lambda b, t, i: t * omega(i)))


@pytest.mark.parametrize("source", ["position", "phase"])
def test_pitch_aware_matches_loop(source):
    base = {"type": "standard", "conf": {"theta": 50.0, "rot_scale": 0.5}}
    rot = build(
        {"type": "pitch_aware", "conf": {"base": base, "angle_source": source, "f0_ref": 200.0,
                                         "radii": True, "radius_floor": 0.25, "phase0": 0.3}}
    )  # fmt: skip
    f0 = sample_f0()
    n = HEAD_DIM // 2
    phase = [[0.3] * 5 for _ in range(2)]
    for b in range(2):
        total = 0.3
        for t in range(5):
            total = total + 2 * math.pi * float(f0[b, t]) * PERIOD
            phase[b][t] = total

    def angle(b: int, t: int, i: int) -> float:
        hz = float(f0[b, t])
        if source == "phase":
            return 0.5 * phase[b][t] * rope_ladder(50.0, n, i)
        return 0.5 * t * rope_ladder(50.0, n, i) * (hz / 200.0 if hz > 0 else 1.0)

    radius = lambda b, t, i: float(f0[b, t]) / 200.0 if f0[b, t] > 0 else 0.25  # noqa: E731
    x = sample_x()
    out = rot.rotate(x, torch.arange(5), F0Track(f0, PERIOD))
    torch.testing.assert_close(out, rotate_pairs(x, angle, radius), rtol=1e-4, atol=1e-4)


def test_axial_matches_loop_and_depends_on_2d_offset():
    rot = build({"type": "axial", "conf": {"theta": 50.0, "freq_theta": 100.0}})
    assert isinstance(rot, AxialRotary)
    positions = grid_positions(2, 3)
    assert positions.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    x = sample_x(t_len=6)

    def angle(b: int, t: int, i: int) -> float:
        time, freq = positions[t].tolist()
        return time * rope_ladder(50.0, 3, i) if i < 3 else freq * rope_ladder(100.0, 3, i - 3)

    torch.testing.assert_close(rot.rotate(x, positions), rotate_pairs(x, angle))
    q, k = torch.randn(HEAD_DIM), torch.randn(HEAD_DIM)

    def score(qp, kp):
        out = rot.rotate(torch.stack([q, k]), torch.tensor([qp, kp]))
        return out[0] @ out[1]

    torch.testing.assert_close(score([3, 1], [1, 4]), score([7, 2], [5, 5]))
    assert not torch.allclose(score([3, 1], [1, 4]), score([3, 1], [1, 3]))
    with pytest.raises(ValueError, match=r"\(T, 2\)"):
        rot.rotate(x, torch.arange(6))


def test_givens_matches_loop_with_half_pairing():
    rot = build({"type": "givens", "conf": {"theta": -60.0, "pairing": "half", "rot_count": 4, "rot_scale": 3.0}})
    assert isinstance(rot, GivensRotary)
    x = sample_x()
    expected = x.clone()
    for t in range(5):
        for k in range(4):
            a = 3.0 * t * rope_ladder(-60.0, 4, k)
            i, j = k, k + 4
            expected[:, :, t, i] = x[:, :, t, i] * math.cos(a) - x[:, :, t, j] * math.sin(a)
            expected[:, :, t, j] = x[:, :, t, i] * math.sin(a) + x[:, :, t, j] * math.cos(a)
    torch.testing.assert_close(rot.rotate(x, torch.arange(5)), expected)


def test_givens_pairing_equals_standard_rope():
    x, pos = sample_x(), torch.arange(5) * 2
    standard = build({"type": "standard", "conf": {"theta": 300.0}})
    interleaved = build({"type": "givens", "conf": {"theta": 300.0}})
    torch.testing.assert_close(interleaved.rotate(x, pos), standard.rotate(x, pos))
    half = build({"type": "givens", "conf": {"theta": 300.0, "pairing": "half"}})
    n = HEAD_DIM // 2
    order = torch.stack([torch.arange(n), torch.arange(n) + n], dim=-1).flatten()  # half layout -> interleaved
    torch.testing.assert_close(half.rotate(x, pos)[..., order], standard.rotate(x[..., order], pos))


def test_quaternion_matches_loop():
    rot = build({"type": "quaternion", "conf": {"groups": 2, "theta": 20.0, "rot_scale": 1.5}})
    assert isinstance(rot, QuaternionRotary)
    with torch.no_grad():  # move away from the orthogonal initialisation
        rot.down.add_(0.3 * torch.randn_like(rot.down))
        rot.up.add_(0.3 * torch.randn_like(rot.up))
        rot.axis.copy_(torch.randn_like(rot.axis))
    x = sample_x()
    expected = torch.empty_like(x)
    for t in range(5):
        for j in range(2):
            a = 1.5 * t * rope_ladder(20.0, 2, j)
            d, u = rot.down[j].detach(), rot.up[j].detach()
            part = x[:, :, t, 6 * j : 6 * j + 6]
            change = u @ (rodrigues(rot.axis[j].detach(), a) - torch.eye(3)) @ d
            expected[:, :, t, 6 * j : 6 * j + 6] = part + part @ change.T
    torch.testing.assert_close(rot.rotate(x, torch.arange(5)), expected, rtol=1e-4, atol=1e-5)


# --- properties ---------------------------------------------------------------------------------

UNIT_RADIUS = [
    "standard",
    {"type": "standard", "conf": {"theta": -6000.0, "rot_scale": 3.0}},
    {"type": "learned", "conf": {"max_positions": 64}},
    "mel",
    "givens",
    {"type": "quaternion", "conf": {"groups": 4}},
]


@pytest.mark.parametrize("spec", UNIT_RADIUS + [{"type": "axial", "conf": {}}], ids=str)
def test_unit_radius_variants_keep_norms(spec):
    rot = build(spec)
    x = sample_x(t_len=6)
    pos = grid_positions(2, 3) if isinstance(rot, AxialRotary) else torch.arange(6) + 5
    out = rot.rotate(x, pos)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    assert not torch.allclose(out, x)


OFFSET_ONLY = UNIT_RADIUS[:2] + [
    {"type": "learned", "conf": {"position_bias": False}},
    {"type": "mel", "conf": {"min_hz": 0.0, "rot_count": 3}},
    {"type": "givens", "conf": {"pairing": "half", "theta": -100.0}},
    {"type": "quaternion", "conf": {"groups": 2, "learned_axis": False, "axis": [0.2, -1.0, 0.5]}},
]


@pytest.mark.parametrize("spec", OFFSET_ONLY, ids=str)
def test_position_variants_score_depends_only_on_offset(spec):
    rot = build(spec)
    if isinstance(rot, LearnedRotary) and rot.bias is None:
        with torch.no_grad():
            rot.inv_freq.mul_(torch.rand_like(rot.inv_freq) + 0.5)  # learned frequencies stay relative
    torch.manual_seed(1)
    q, k = torch.randn(HEAD_DIM), torch.randn(HEAD_DIM)

    def score(q_pos: int, k_pos: int) -> torch.Tensor:
        out = rot.rotate(torch.stack([q, k]), torch.tensor([q_pos, k_pos]))
        return out[0] @ out[1]

    torch.testing.assert_close(score(3, 1), score(3 + 17, 1 + 17))
    torch.testing.assert_close(score(0, 9), score(40, 49))
    assert not torch.allclose(score(3, 1), score(3, 2))


def test_learned_position_bias_breaks_offset_invariance():
    rot = build({"type": "learned", "conf": {"max_positions": 64}})
    with torch.no_grad():
        rot.bias.normal_()
    q, k = torch.randn(HEAD_DIM), torch.randn(HEAD_DIM)
    a = rot.rotate(torch.stack([q, k]), torch.tensor([3, 1]))
    b = rot.rotate(torch.stack([q, k]), torch.tensor([20, 18]))
    assert not torch.allclose(a[0] @ a[1], b[0] @ b[1])


def test_negative_theta_and_rot_scale_and_rot_count():
    pos = torch.arange(7)
    forward = build({"type": "standard", "conf": {"theta": 500.0}}).freqs(pos)
    torch.testing.assert_close(build({"type": "standard", "conf": {"theta": -500.0}}).freqs(pos), forward.conj())
    doubled = build({"type": "standard", "conf": {"theta": 500.0, "rot_scale": 2.0}}).freqs(pos)
    torch.testing.assert_close(doubled, forward**2)
    by_count = build({"type": "standard", "conf": {"rot_count": 2}})
    by_dim = build({"type": "standard", "conf": {"rot_dim": 4}})
    torch.testing.assert_close(by_count.freqs(pos), by_dim.freqs(pos))
    assert by_count.freqs(pos).shape == (7, 2)
    with pytest.raises(ValueError, match="not both"):
        build({"type": "standard", "conf": {"rot_dim": 4, "rot_count": 2}})
    with pytest.raises(ValueError, match="rot_count"):
        build({"type": "mel", "conf": {"rot_count": 7}})


@pytest.mark.parametrize("base", ["standard", {"type": "mel", "conf": {"max_hz": 4000.0}}], ids=str)
def test_pitch_aware_with_unvoiced_f0_and_no_radii_equals_base(base):
    pitch = build({"type": "pitch_aware", "conf": {"base": base}})
    x = sample_x()
    silent = F0Track(torch.zeros(2, 5), PERIOD)
    torch.testing.assert_close(pitch.rotate(x, torch.arange(5), silent), build(base).rotate(x, torch.arange(5)))
    voiced = F0Track(sample_f0(), PERIOD)
    assert not torch.allclose(pitch.rotate(x, torch.arange(5), voiced), build(base).rotate(x, torch.arange(5)))


def test_pitch_aware_radii_scale_and_unvoiced_floor():
    rot = build({"type": "pitch_aware", "conf": {"radii": True, "f0_ref": 100.0}})
    f0 = torch.tensor([[200.0, 0.0, 50.0]])
    x = torch.randn(1, 2, 3, HEAD_DIM)
    out = rot.rotate(x, torch.arange(3), F0Track(f0, PERIOD))
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1) * torch.tensor([2.0, 0.0, 0.5]))


def test_pitch_aware_without_f0_errors_clearly():
    rot = build("pitch_aware")
    with pytest.raises(ValueError, match="needs f0"):
        rot.rotate(sample_x(), torch.arange(5))
    with pytest.raises(ValueError, match="resample_f0"):
        rot.rotate(sample_x(), torch.arange(5), F0Track(torch.zeros(2, 9), PERIOD))
    with pytest.raises(ValueError, match="base"):
        build({"type": "pitch_aware", "conf": {"base": "quaternion"}})
    with pytest.raises(ValueError, match="phase"):
        build({"type": "pitch_aware", "conf": {"base": "learned", "angle_source": "phase"}})


def test_pitch_bias_symmetric_zero_for_equal_pitch_and_unvoiced():
    f0 = torch.tensor([[100.0, 200.0, 0.0, 100.0, 400.0]])
    bias = pitch_similarity_bias(f0, f0, 2.0)
    assert bias.shape == (1, 1, 5, 5)
    torch.testing.assert_close(bias, bias.transpose(-1, -2))
    assert (bias[0, 0].diagonal() == 0).all() and bias[0, 0, 0, 3] == 0
    assert (bias[0, 0, 2] == 0).all() and (bias[0, 0, :, 2] == 0).all()
    torch.testing.assert_close(bias[0, 0, 0, 1], torch.tensor(-2.0 * math.log(2.0)))
    assert bias[0, 0, 0, 4] < bias[0, 0, 0, 1] < 0
    rot = build({"type": "pitch_aware", "conf": {"pitch_bias": 2.0}})
    torch.testing.assert_close(rot.score_bias(F0Track(f0, PERIOD), F0Track(f0, PERIOD)), bias)
    assert build("pitch_aware").score_bias(F0Track(f0, PERIOD), F0Track(f0, PERIOD)) is None


def test_quaternion_rotation_equals_rodrigues_matrix():
    torch.manual_seed(0)
    for _ in range(5):
        v, axis, angle = torch.randn(3), torch.randn(3), float(torch.randn(()) * 3)
        unit = axis / axis.norm()
        rotated = quaternion_rotate(v, unit, torch.tensor(angle))
        torch.testing.assert_close(rotated, rodrigues(axis, angle) @ v)


def test_quaternion_projections_are_pseudo_inverses_at_init():
    rot = build({"type": "quaternion", "conf": {"groups": 2}})
    assert rot.down.shape == (2, 3, 6) and rot.up.shape == (2, 6, 3)
    for j in range(2):
        torch.testing.assert_close(rot.up[j].detach(), torch.linalg.pinv(rot.down[j].detach()))
        torch.testing.assert_close(rot.down[j] @ rot.up[j], torch.eye(3))
    with pytest.raises(ValueError, match="groups"):
        build({"type": "quaternion", "conf": {"groups": 5}})


def test_quaternion_trains_projections_and_axis():
    rot = build({"type": "quaternion", "conf": {"groups": 2}})
    rot.rotate(sample_x(), torch.arange(5) + 1).pow(2).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (rot.down, rot.up, rot.axis))


def test_accumulate_phase_equals_cumulative_loop():
    f0 = sample_f0(t_len=7)
    phase = accumulate_phase(f0, 0.01, phase0=1.0)
    for b in range(2):
        phi = 1.0
        for t in range(7):
            phi = phi + 2 * math.pi * float(f0[b, t]) * 0.01
            assert float(phase[b, t]) == pytest.approx(phi, rel=1e-6)
    assert phase[0, 1] == phase[0, 0]  # unvoiced frame holds the phase


def test_resample_f0_keeps_constants_lengths_and_voicing():
    const = torch.full((2, 37), 180.0)
    for length in (37, 9, 5, 60):
        out = resample_f0(const, length)
        assert out.shape == (2, length)
        torch.testing.assert_close(out, torch.full((2, length), 180.0))
    steps = torch.tensor([[0.0] * 8 + [200.0] * 8 + [0.0] * 8])
    down = resample_f0(steps, 6)
    assert set(down[0].tolist()) <= {0.0, 200.0}  # no half-way pitch at voicing edges
    assert down[0].tolist() == [0.0, 0.0, 200.0, 200.0, 0.0, 0.0]
    up = resample_f0(steps, 32)  # a frame straddling an edge is voiced when its nearer input frame is
    centres = [(j + 0.5) * 24 / 32 - 0.5 for j in range(32)]
    expected = [200.0 if 8 <= math.floor(c + 0.5) <= 15 else 0.0 for c in centres]
    assert up[0].tolist() == expected and 0 < expected.count(200.0) < 32
    assert torch.equal(resample_f0(torch.zeros(1, 10), 4), torch.zeros(1, 4))


# --- attention plumbing -------------------------------------------------------------------------


def test_attention_adds_pitch_bias_to_scores():
    torch.manual_seed(0)
    attn = MultiHeadAttention(24, 2, rotary={"type": "pitch_aware", "conf": {"pitch_bias": 1.5}}).eval()
    x, f0 = torch.randn(2, 5, 24), sample_f0()
    padding = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    track = F0Track(f0, PERIOD)
    out, _ = attn(x, key_padding_mask=padding, f0=track)
    pos = torch.arange(5)
    q = attn.rotary.rotate(attn._split_heads(attn.query(x)), pos, track)
    k = attn.rotary.rotate(attn._split_heads(attn.key(x)), pos, track)
    v = attn._split_heads(attn.value(x))
    heads = attend_reference(q, k, v, padding, bias=pitch_similarity_bias(f0, f0, 1.5))
    torch.testing.assert_close(out, attn.out(heads.transpose(1, 2).flatten(2)))
    unbiased = MultiHeadAttention(24, 2, rotary="pitch_aware").eval()
    unbiased.load_state_dict(attn.state_dict())
    assert not torch.allclose(unbiased(x, key_padding_mask=padding, f0=track)[0], out)
    with pytest.raises(ValueError, match="needs f0"):
        attn(x)


def test_attention_can_rotate_keys_differently():
    torch.manual_seed(0)
    spec = {"type": "standard", "conf": {"theta": 100.0}}
    shared = MultiHeadAttention(24, 2, rotary=spec).eval()
    assert shared.rotary_k is None and shared.key_rotary is shared.rotary
    same = MultiHeadAttention(24, 2, rotary=spec, rotary_k=spec).eval()
    same.load_state_dict(shared.state_dict())
    x = torch.randn(2, 5, 24)
    torch.testing.assert_close(same(x)[0], shared(x)[0])
    mixed = MultiHeadAttention(24, 2, rotary=spec, rotary_k={"type": "givens", "conf": {"theta": -100.0}}).eval()
    mixed.load_state_dict(shared.state_dict())
    assert isinstance(mixed.key_rotary, GivensRotary)
    assert not torch.allclose(mixed(x)[0], shared(x)[0])
    learned = MultiHeadAttention(24, 2, rotary="learned", rotary_k={"type": "quaternion", "conf": {"groups": 2}})
    keys = learned.state_dict().keys()
    assert {"rotary.inv_freq", "rotary.bias", "rotary_k.down", "rotary_k.up", "rotary_k.axis"} <= set(keys)


def test_every_registered_variant_runs_in_attention_with_cache():
    """Cached one-step self-attention equals the full causal pass, for every position variant."""
    for name in ROTARY.names():
        if name in ("axial", "pitch_aware"):
            continue  # need (T, 2) positions / f0
        torch.manual_seed(0)
        attn = MultiHeadAttention(24, 2, rotary=name).eval()
        x = torch.randn(2, 4, 24)
        full, _ = attn(x, causal=True)
        cache, steps = None, []
        for t in range(4):
            out, cache = attn(x[:, t : t + 1], causal=True, cache=cache)
            steps.append(out)
        torch.testing.assert_close(torch.cat(steps, dim=1), full, msg=name)


def test_registry_lists_the_family():
    family = {"standard", "none", "learned", "mel", "pitch_aware", "givens", "quaternion", "axial"}
    assert family <= set(ROTARY.names())
    assert isinstance(build("mel"), MelRotary) and isinstance(build("pitch_aware"), PitchAwareRotary)
    assert isinstance(build({"type": "standard", "conf": {"theta": 7.0}}), StandardRotary)
