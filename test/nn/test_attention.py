"""Attention: fused kernel vs explicit reference, the projection module's KV cache, and the one base
every variant goes through."""
import pytest
import torch

from echo_plugin.catalog import ATTENTION
from echo_plugin.nn.attention import MultiHeadAttention, attend, attend_reference
from echo_plugin.nn.attention.kernel import attention_mask, masked_attend
from echo_plugin.nn.attention.standard import AttentionCall


def qkv(t_len: int, s_len: int, batch: int = 3, heads: int = 2, dim: int = 8):
    torch.manual_seed(0)
    q = torch.randn(batch, heads, t_len, dim)
    return q, torch.randn(batch, heads, s_len, dim), torch.randn(batch, heads, s_len, dim)


PADDING = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] + [False] * 5])


@pytest.mark.parametrize(
    "t_len, padding, causal",
    [
        (6, None, False),
        (6, PADDING, False),
        (6, None, True),
        (6, PADDING, True),
        (2, None, True),  # fewer queries than keys: bottom-right aligned (KV cache)
        (2, PADDING, True),
        (4, PADDING, False),
    ],
)
def test_sdpa_matches_reference(t_len, padding, causal):
    q, k, v = qkv(t_len, 6)
    torch.testing.assert_close(attend(q, k, v, padding, causal), attend_reference(q, k, v, padding, causal))


@pytest.mark.parametrize("t_len, padding, causal", [(6, PADDING, False), (6, PADDING, True), (2, PADDING, True)])
def test_masked_attend_under_the_same_mask_matches_reference(t_len, padding, causal):
    q, k, v = qkv(t_len, 6)
    bias = torch.randn(1, 2, t_len, 6)
    visible = attention_mask(padding, causal, t_len, 6, q.device)
    expected = attend_reference(q, k, v, padding, causal, bias=bias)
    torch.testing.assert_close(masked_attend(q, k, v, visible, bias), expected)
    torch.testing.assert_close(attend(q, k, v, padding, causal, bias=bias), expected)


def test_masked_attend_takes_any_per_query_mask():
    """A band |i - j| <= 1 (no causal flag can say it): the reference with the hidden scores at -inf."""
    q, k, v = qkv(6, 6)
    distance = torch.arange(6)[:, None] - torch.arange(6)[None, :]
    band = distance.abs() <= 1
    bias = torch.where(band, 0.0, float("-inf"))
    torch.testing.assert_close(masked_attend(q, k, v, band), attend_reference(q, k, v, bias=bias))
    nothing = torch.zeros(6, 6, dtype=torch.bool)
    nothing[:3] = band[:3]
    out = masked_attend(q, k, v, nothing)
    assert torch.isfinite(out).all() and (out[:, :, 3:] == 0).all()


def test_causal_reference_hides_future():
    q, k, v = qkv(6, 6)
    out = attend_reference(q, k, v, causal=True)
    v2 = v.clone()
    v2[:, :, 4:] = 100.0
    changed = attend(q, k, v2, causal=True)
    torch.testing.assert_close(changed[:, :, :4], out[:, :, :4])
    assert not torch.allclose(changed[:, :, 4:], out[:, :, 4:])


def test_fully_masked_rows_are_zero_not_nan():
    q, k, v = qkv(4, 6)
    padding = PADDING.clone()
    padding[2] = False  # an utterance of length 0
    out = attend(q, k, v, padding, causal=False)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[2], torch.zeros_like(out[2]))
    torch.testing.assert_close(out, attend_reference(q, k, v, padding))
    # more queries than keys with causal masking: the first queries see nothing
    q, k, v = qkv(6, 3)
    out = attend(q, k, v, causal=True)
    assert torch.isfinite(out).all() and (out[:, :, :3] == 0).all()


def test_module_incremental_cache_equals_full_causal_pass():
    torch.manual_seed(0)
    attn = ATTENTION.build("standard", d_model=16, n_heads=4, rotary="standard").eval()
    assert isinstance(attn, MultiHeadAttention)
    x = torch.randn(2, 5, 16)
    full, (k_full, v_full) = attn(x, causal=True)
    cache = None
    steps = []
    for t in range(5):
        out, cache = attn(x[:, t : t + 1], causal=True, cache=cache)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), full)
    torch.testing.assert_close(cache[0], k_full)
    assert cache[0].shape == (2, 4, 5, 4)


def test_module_rotary_makes_scores_relative():
    """Shifting every position by a constant leaves self-attention output unchanged."""
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 4, rotary={"type": "standard", "conf": {"theta": 50.0}}).eval()
    x = torch.randn(2, 5, 16)
    pos = torch.arange(5)
    base, _ = attn(x, q_positions=pos, k_positions=pos)
    shifted, _ = attn(x, q_positions=pos + 11, k_positions=pos + 11)
    torch.testing.assert_close(shifted, base)
    scrambled, _ = attn(x, q_positions=pos, k_positions=pos * 3)
    assert not torch.allclose(scrambled, base)


def test_every_attention_variant_goes_through_the_base_forward():
    """Projections, rotary, positions, KV cache and score bias live in MultiHeadAttention alone."""
    for name in ATTENTION.names():
        cls = ATTENTION.get(name)
        assert issubclass(cls, MultiHeadAttention), name
        assert cls.forward is MultiHeadAttention.forward, f"{name} overrides forward"
        assert cls.score_bias is MultiHeadAttention.score_bias, f"{name} overrides score_bias"


class ReferenceAttention(MultiHeadAttention):
    """A variant with only its attention step changed: the explicit reference instead of the fused kernel."""

    def attend(self, q, k, v, mask, bias, call: AttentionCall):
        return attend_reference(q, k, v, mask, call.causal, bias=bias, masking=self.masking, zero_keys=call.zero_keys)


def test_a_variant_overriding_only_attend_gets_positions_cache_and_cross_attention():
    torch.manual_seed(0)
    standard = MultiHeadAttention(16, 4, rotary="standard").eval()
    variant = ReferenceAttention(16, 4, rotary="standard").eval()
    variant.load_state_dict(standard.state_dict())
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    keep = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    for args, kwargs in [((x,), {"causal": True}), ((x, memory), {"key_padding_mask": keep})]:
        (out, (k, v)), (ref, (k_ref, v_ref)) = variant(*args, **kwargs), standard(*args, **kwargs)
        torch.testing.assert_close(out, ref)
        assert torch.equal(k, k_ref) and torch.equal(v, v_ref)
    cache, steps = None, []
    for t in range(5):
        out, cache = variant(x[:, t : t + 1], causal=True, cache=cache)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), standard(x, causal=True)[0])
    assert cache[0].shape == (2, 4, 5, 4)


def test_call_defaults_positions_after_the_cache_and_projects_on_first_use():
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 4, rotary="standard")
    calls = []
    attn.key.register_forward_hook(lambda *_: calls.append("key"))
    past = (torch.randn(2, 4, 3, 4), torch.randn(2, 4, 3, 4))
    call = AttentionCall(attn, torch.randn(2, 2, 16), cache=past)
    assert call.past == 3 and call.q_positions.tolist() == [3, 4] and call.k_positions is call.q_positions
    assert calls == [] and call.v.shape == (2, 4, 5, 4) and calls == []
    assert torch.equal(call.k[:, :, :3], past[0]) and calls == ["key"]
    cross = AttentionCall(attn, torch.randn(2, 2, 16), key_value=torch.randn(2, 6, 16))
    assert cross.k_positions.tolist() == list(range(6)) and cross.k_len == 6
