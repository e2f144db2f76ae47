"""Key-masking strategies: the fused path (keys scaled) against explicit score formulas."""
import math

import pytest
import torch
from torch import nn

from echo_plugin.catalog import MASKING
from echo_plugin.nn.attention import attend, attend_reference
from echo_plugin.nn.masking import HardMasking, SoftMasking, frame_silence, subsample_silence

PADDING = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] + [False] * 5])
SILENCE = torch.tensor([[False, True, True, False, False, False], [True] + [False] * 5, [False] * 6])


def qkv(t_len: int, s_len: int, batch: int = 3, heads: int = 2, dim: int = 8, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, heads, n, dim, generator=gen) for n in (t_len, s_len, s_len))


def explicit(q, k, v, softened, eps, causal, hidden=None, bias=None):
    """softmax(where(softened, eps * s, s) [+ bias], -inf where causal-future or hidden) v, written out."""
    s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    s = torch.where(softened[:, None, None, :], eps * s, s)
    if bias is not None:
        s = s + bias
    t_len, s_len = q.shape[-2], k.shape[-2]
    blocked = torch.zeros(t_len, s_len, dtype=torch.bool)
    if causal:
        blocked = torch.arange(s_len)[None, :] > torch.arange(t_len)[:, None] + (s_len - t_len)
    blocked = blocked[None, None]
    if hidden is not None:
        blocked = blocked | hidden[:, None, None, :]
    return s.masked_fill(blocked, float("-inf")).softmax(-1) @ v


@pytest.mark.parametrize("t_len, causal", [(6, False), (6, True), (2, True)])  # 2: KV cache, bottom-right causal
@pytest.mark.parametrize("eps", [1e-6, 0.3])  # 0.3: far enough from 0 that "score * eps" and "score 0" differ
def test_soft_fused_equals_explicit_formula(t_len, causal, eps):
    q, k, v = qkv(t_len, 6)
    soft = SoftMasking(scale=eps)
    out = attend(q, k, v, PADDING, causal, masking=soft, zero_keys=SILENCE)
    torch.testing.assert_close(out, explicit(q, k, v, ~PADDING | SILENCE, eps, causal))
    torch.testing.assert_close(out, attend_reference(q, k, v, PADDING, causal, masking=soft, zero_keys=SILENCE))
    # a real difference from hard masking and from "score set to 0"
    assert not torch.allclose(out, attend(q, k, v, PADDING, causal), atol=1e-3)
    if eps > 0.1:
        assert not torch.allclose(out, explicit(q, k, v, ~PADDING | SILENCE, 0.0, causal), atol=1e-3)


def test_soft_padding_false_hides_padding_and_softens_only_silence():
    q, k, v = qkv(6, 6)
    soft = SoftMasking(scale=0.2, padding=False)
    out = attend(q, k, v, PADDING, False, masking=soft, zero_keys=SILENCE & PADDING)
    torch.testing.assert_close(out, explicit(q, k, v, SILENCE & PADDING, 0.2, False, hidden=~PADDING))


def test_soft_combines_with_additive_bias():
    q, k, v = qkv(6, 6)
    bias = torch.randn(1, 2, 6, 6, generator=torch.Generator().manual_seed(3))
    soft = SoftMasking(scale=0.25)
    out = attend(q, k, v, PADDING, True, masking=soft, zero_keys=SILENCE, bias=bias)
    torch.testing.assert_close(out, explicit(q, k, v, ~PADDING | SILENCE, 0.25, True, bias=bias))
    torch.testing.assert_close(
        out, attend_reference(q, k, v, PADDING, True, masking=soft, zero_keys=SILENCE, bias=bias)
    )
    hard = attend(q, k, v, PADDING, True, bias=bias)
    torch.testing.assert_close(hard, attend_reference(q, k, v, PADDING, True, bias=bias))


@pytest.mark.parametrize("causal", [False, True])
def test_hard_equals_the_plain_minus_inf_kernel(causal):
    q, k, v = qkv(6, 6)
    hard = MASKING.build("hard")
    assert isinstance(hard, HardMasking)
    out = attend(q, k, v, PADDING, causal, masking=hard, zero_keys=SILENCE)  # silence is ignored
    assert torch.equal(out, attend(q, k, v, PADDING, causal))
    torch.testing.assert_close(out, explicit(q, k, v, torch.zeros_like(PADDING), 1.0, causal, hidden=~PADDING))
    torch.testing.assert_close(out, attend_reference(q, k, v, PADDING, causal, masking=hard))


@pytest.mark.parametrize("name", MASKING.names())
def test_every_strategy_fused_matches_its_score_definition(name):
    """For each registered strategy, scaling keys (fused) equals scaling scores (reference)."""
    q, k, v = qkv(6, 6)
    strategy = MASKING.build(name)
    for causal in (False, True):
        torch.testing.assert_close(
            attend(q, k, v, PADDING, causal, masking=strategy, zero_keys=SILENCE),
            attend_reference(q, k, v, PADDING, causal, masking=strategy, zero_keys=SILENCE),
        )


LOW, HIGH = torch.tensor(1e-8), torch.tensor(0.1)  # the range bounds as float32


def test_learned_scale_stays_in_its_range_and_gets_gradients():
    conf = {"scale": 1e-6, "learned": True, "min_scale": 1e-8, "max_scale": 0.1}
    soft = MASKING.build({"type": "soft", "conf": conf})
    assert [name for name, _ in soft.named_parameters()] == ["scale_logit"]
    torch.testing.assert_close(soft.scale(), torch.tensor(1e-6))
    q, k, v = qkv(6, 6)
    attend(q, k, v, PADDING, False, masking=soft, zero_keys=SILENCE).square().sum().backward()
    grad = soft.scale_logit.grad
    assert grad is not None and torch.isfinite(grad) and grad != 0
    for value in (-1e4, -30.0, 0.0, 30.0, 1e4):  # any parameter value maps inside the range
        with torch.no_grad():
            soft.scale_logit.fill_(value)
        assert LOW <= soft.scale() <= HIGH
    # an optimizer pushing hard keeps it inside, and the gradient still flows near the edge
    with torch.no_grad():
        soft.scale_logit.zero_()
    opt = torch.optim.Adam(soft.parameters(), lr=0.5)
    for _ in range(20):
        opt.zero_grad()
        (-soft.scale()).backward()  # wants eps as large as possible
        opt.step()
    assert LOW <= soft.scale() <= HIGH and soft.scale() > 0.09
    soft.scale_logit.grad = None
    soft.scale().backward()
    assert soft.scale_logit.grad != 0


def test_soft_masking_validates_its_conf():
    with pytest.raises(ValueError):
        SoftMasking(scale=2.0)
    with pytest.raises(ValueError):
        SoftMasking(scale=1e-9, learned=True)  # below min_scale
    with pytest.raises(ValueError):
        SoftMasking(scale=0.5, learned=True, max_scale=0.1)
    assert not list(SoftMasking().parameters())


@pytest.mark.parametrize("q_len", [6, 3])
def test_decoder_causality_stays_exact_with_soft_padding(q_len):
    """Changing any future key/value never changes earlier outputs, and gives them exactly zero gradient."""
    q, k, v = qkv(q_len, 6)
    past = 6 - q_len
    padding = torch.tensor([[True] * 6, [True] * 5 + [False], [True] * 3 + [False] * 3])
    soft = SoftMasking(scale=1e-6)
    base = attend(q, k, v, padding, True, masking=soft)
    for j in range(past + 1, 6):  # key j is in the future of queries 0 .. j - past - 1
        k2, v2 = k.clone(), v.clone()
        k2[:, :, j] += 100.0
        v2[:, :, j] -= 100.0
        changed = attend(q, k2, v2, padding, True, masking=soft)
        visible_rows = j - past
        assert torch.equal(changed[:, :, :visible_rows], base[:, :, :visible_rows])
    k_, v_ = k.clone().requires_grad_(), v.clone().requires_grad_()
    attend(q, k_, v_, padding, True, masking=soft)[:, :, 0].sum().backward()
    assert (k_.grad[:, :, past + 1 :] == 0).all() and (v_.grad[:, :, past + 1 :] == 0).all()


def test_soft_padding_lets_padding_values_reach_real_frames():
    """Documented consequence: with soft padding, padded values leak into real outputs (hard: never)."""
    q, k, v = qkv(6, 6)
    v2 = v.clone()
    v2[1, :, 4:] = 50.0  # utterance 1's padding
    for strategy, leaks in ((SoftMasking(), True), (SoftMasking(padding=False), False), (HardMasking(), False)):
        a = attend(q, k, v, PADDING, False, masking=strategy)[1, :, :4]
        b = attend(q, k, v2, PADDING, False, masking=strategy)[1, :, :4]
        assert torch.allclose(a, b) is not leaks


def test_frame_silence_relative_to_loudest_frame_and_zero_frames():
    feats = torch.full((2, 6, 3), 5.0)
    feats[0, 1] = -4.0  # 9 below the loudest: silent at threshold 7
    feats[0, 2] = 0.0  # all-zero frame: silent
    feats[0, 3] = 0.0 + 1.0  # 4 below: not silent
    feats[1, 4:] = -100.0  # padding of a length-4 utterance: never silent
    silent = frame_silence(feats, torch.tensor([6, 4]), threshold=7.0)
    assert silent.tolist() == [[False, True, True, False, False, False], [False] * 6]
    shifted = frame_silence(feats[:1] - 3.0, None, threshold=7.0)  # a constant shift (mean removal) changes nothing
    assert shifted[0, :2].tolist() == [False, True]


def test_subsample_silence_follows_the_conv_geometry():
    from echo_plugin.espnet_legacy import Conv2dSubsampling

    embed = Conv2dSubsampling(16, 8, 0.0, pos_enc=nn.Dropout(0.0))
    silent = torch.zeros(1, 23, dtype=torch.bool)
    silent[0, 0:11] = True  # output frame i sees input frames 4i .. 4i + 6
    silent[0, 13:19] = True  # frame 3 sees 12 .. 18: one loud frame (12) keeps it
    out = subsample_silence(silent, embed)
    assert out.shape[1] == embed(torch.zeros(1, 23, 16), None)[0].shape[1] == 5
    assert out[0].tolist() == [True, True, False, False, False]
