"""Adaptive attention: band kernels vs an explicit formula, limits equal standard attention,
node-importance routing, the Q-learning span refiner on synthetic tasks, checkpoints, eval freeze."""
from __future__ import annotations

import io
import math

import pytest
import torch

from echo_plugin.catalog import ATTENTION
from echo_plugin.nn.attention.adaptive import AdaptiveAttention
from echo_plugin.nn.attention.local import chunked_band_attend, dense_band_attend, mean_attend
from echo_plugin.nn.attention.span_refiner import SpanRefiner

D, H = 16, 2


def band_reference(q, k, v, keep, causal, half_width, width=None, tau=1.0):
    """softmax over keys with |i - j| <= w (and j <= i if causal) of q.k/sqrt(dh) - max(0, |i-j| - w_i)/tau."""
    t_len, s_len = q.shape[-2], k.shape[-2]
    out = torch.zeros_like(q)
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            for i in range(t_len):
                pos = s_len - t_len + i
                logits, values = [], []
                for j in range(s_len):
                    d = pos - j
                    if (half_width is not None and abs(d) > half_width) or (causal and d < 0):
                        continue
                    if keep is not None and not keep[b, j]:
                        continue
                    score = float(q[b, h, i] @ k[b, h, j]) / math.sqrt(q.shape[-1])
                    if width is not None:
                        score -= max(0.0, abs(d) - float(width[b, h, i])) / tau
                    logits.append(score)
                    values.append(v[b, h, j])
                if logits:
                    weights = torch.tensor(logits).softmax(0)
                    out[b, h, i] = (weights[:, None] * torch.stack(values)).sum(0)
    return out


def qkv(t_len, s_len=None, batch=2):
    torch.manual_seed(0)
    s_len = s_len or t_len
    return torch.randn(batch, H, t_len, 4), torch.randn(batch, H, s_len, 4), torch.randn(batch, H, s_len, 4)


KEEP = torch.tensor([[True] * 23, [True] * 15 + [False] * 8])


@pytest.mark.parametrize("half_width", [0, 3, 7])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("soft", [False, True])
def test_chunked_and_dense_band_match_the_formula(half_width, causal, soft):
    q, k, v = qkv(23)
    width = torch.rand(2, H, 23) * half_width if soft else None
    expected = band_reference(q, k, v, KEEP, causal, half_width, width, tau=1.5)
    dense = dense_band_attend(q, k, v, torch.arange(23), KEEP, causal, half_width, width=width, tau=1.5)
    torch.testing.assert_close(dense, expected, rtol=1e-4, atol=1e-5)
    for chunk in (None, 1, 5, 40):
        chunked = chunked_band_attend(q, k, v, half_width, KEEP, causal, width=width, tau=1.5, chunk=chunk)
        torch.testing.assert_close(chunked, expected, rtol=1e-4, atol=1e-5)


def test_dense_band_with_cache_alignment_and_mean_path():
    q, k, v = qkv(3, 9)  # 3 newest queries over 9 keys (a KV cache of 6)
    keep = torch.ones(2, 9, dtype=torch.bool)
    keep[1, :2] = False
    out = dense_band_attend(q, k, v, torch.arange(6, 9), keep, True, 2)
    torch.testing.assert_close(out, band_reference(q, k, v, keep, True, 2), rtol=1e-4, atol=1e-5)
    mean = mean_attend(v, keep, True, 3)
    expected = torch.stack([v[:, :, : 7 + i][:, :, keep[0, : 7 + i]].mean(2) for i in range(3)], 2)
    torch.testing.assert_close(mean[0], expected[0])
    torch.testing.assert_close(mean[1, :, 0], v[1, :, 2:7].mean(1))


def twin(**conf):
    """(standard, adaptive) with the same projection weights."""
    torch.manual_seed(0)
    standard = ATTENTION.build("standard", d_model=D, n_heads=H, rotary="standard")
    adaptive = ATTENTION.build("adaptive", d_model=D, n_heads=H, rotary="standard", **conf)
    missing, unexpected = adaptive.load_state_dict(standard.state_dict(), strict=False)
    assert not unexpected and all(key.split(".")[0] in {"span_refiner", "focus", "importance"} for key in missing)
    return standard.eval(), adaptive.eval()


T = 12
LIMITS = {
    "span": dict(span={"init": T - 1, "max_span": 64}, focus=False, importance=False),
    "focus": dict(span=False, focus={"w_min": T - 1, "w_max": 40}, importance=False),
    "importance": dict(span=False, focus=False, importance={"fraction": 1.0}),
    "all": dict(span={"init": 20}, focus={"w_min": 30, "w_max": 30}, importance={"fraction": 1.0}),
}


@pytest.mark.parametrize("name", sorted(LIMITS))
@pytest.mark.parametrize("causal", [False, True])
def test_each_part_reduces_to_standard_attention_in_its_limit(name, causal):
    standard, adaptive = twin(**LIMITS[name])
    torch.manual_seed(3)
    x = torch.randn(2, T, D)
    keep = torch.ones(2, T, dtype=torch.bool)
    keep[1, 8:] = False
    expected, _ = standard(x, key_padding_mask=keep, causal=causal)
    got, _ = adaptive(x, key_padding_mask=keep, causal=causal)
    torch.testing.assert_close(got, expected)
    # cached incremental self-attention too (the decoder's use)
    cache = None
    for t in range(T):
        step, cache = adaptive(x[:, t : t + 1], causal=True, cache=cache)
        full, _ = standard(x[:, : t + 1], causal=True)
        torch.testing.assert_close(step[:, 0], full[:, -1])


@pytest.mark.parametrize("conf", [
    dict(span={"init": 2}, focus=False, importance=False),
    dict(span=False, focus={"w_min": 1, "w_max": 3}, importance=False),
    dict(span=False, focus=False, importance={"fraction": 0.5}),
])  # fmt: skip
def test_each_part_changes_the_output_below_its_limit(conf):
    standard, adaptive = twin(**conf)
    x = torch.randn(2, T, D)
    assert not torch.allclose(adaptive(x)[0], standard(x)[0], atol=1e-4)


def test_importance_routes_top_tokens_to_full_attention_and_the_rest_to_the_local_path():
    standard, adaptive = twin(span=False, focus=False,
                              importance={"fraction": 0.25, "select": "topk", "cheap": "local", "cheap_window": 1})
    cheap_twin = twin(span={"init": 1, "min_span": 1}, focus=False, importance=False)[1]
    torch.manual_seed(4)
    x = torch.randn(2, 16, D)
    keep = torch.ones(2, 16, dtype=torch.bool)
    keep[1, 10:] = False
    got, _ = adaptive(x, key_padding_mask=keep)
    full, _ = standard(x, key_padding_mask=keep)
    local, _ = cheap_twin(x, key_padding_mask=keep)
    score = adaptive.importance.scorer(x).squeeze(-1).masked_fill(~keep, float("-inf"))
    for b, budget in ((0, 4), (1, math.ceil(0.25 * 10))):
        top = set(score[b].topk(budget).indices.tolist())
        for t in range(16):
            expected = full[b, t] if t in top else local[b, t]
            torch.testing.assert_close(got[b, t], expected, msg=f"utterance {b} token {t} (important: {t in top})")


def test_routing_trains_the_scorer_and_gathered_queries_skip_the_full_path(monkeypatch):
    _, adaptive = twin(span=False, focus=False, importance={"fraction": 0.25, "select": "topk"})
    adaptive.train()
    seen = []
    original = adaptive._main

    def spy(q, *args, **kwargs):
        seen.append(q.shape[-2])
        return original(q, *args, **kwargs)

    monkeypatch.setattr(adaptive, "_main", spy)
    x = torch.randn(3, 20, D, requires_grad=True)
    out, _ = adaptive(x)
    out.pow(2).sum().backward()
    assert seen == [5]  # only ceil(0.25 * 20) queries reach the full path
    assert adaptive.importance.scorer.weight.grad.abs().sum() > 0
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_threshold_selection_tracks_the_quantile_in_training_only():
    _, adaptive = twin(span=False, focus=False, importance={"fraction": 0.3, "momentum": 1.0})
    x = torch.randn(2, 50, D)
    adaptive.train()
    adaptive(x)
    score = adaptive.importance.scorer(x).squeeze(-1)
    torch.testing.assert_close(adaptive.importance.threshold, torch.quantile(score.detach().flatten(), 0.7))
    adaptive.eval()
    before = adaptive.importance.threshold.clone()
    adaptive(torch.randn(2, 50, D))
    assert torch.equal(adaptive.importance.threshold, before)


def test_bad_conf_is_refused_clearly():
    with pytest.raises(ValueError, match="received_weight"):
        ATTENTION.build("adaptive", d_model=D, n_heads=H, importance={"received_weight": 1.0})
    with pytest.raises(ValueError, match="must be true, false or a mapping"):
        ATTENTION.build("adaptive", d_model=D, n_heads=H, focus="wide")
    topk = ATTENTION.build("adaptive", d_model=D, n_heads=H, importance={"select": "topk", "received_weight": 0.5})
    topk(torch.randn(1, 6, D))  # non-causal: fine
    with pytest.raises(ValueError, match="select: threshold in causal"):
        topk(torch.randn(1, 6, D), causal=True)
    with pytest.raises(ValueError, match="select: threshold in causal"):  # cross-attention: decoder targets
        topk(torch.randn(1, 6, D), torch.randn(1, 9, D))


# ---- Q-learning span refiner ----------------------------------------------------------------


def uniform_band_module(init: int, **span) -> AdaptiveAttention:
    """Adaptive attention whose scores are all zero (uniform weights inside the band) and whose
    value/output projections are identities: the output is the mean of the inputs in the band,
    so the span alone decides the loss."""
    module = AdaptiveAttention(D, 1, span={"init": init, "min_span": 1, "max_span": 48, "interval": 4,
                                           "epsilon": 0.2, **span}, focus=False, importance=False)
    with torch.no_grad():
        for linear in (module.query, module.key):
            linear.weight.zero_()
            linear.bias.zero_()
        for linear in (module.value, module.out):
            linear.weight.copy_(torch.eye(D))
            linear.bias.zero_()
    return module


def neighbourhood_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, T, D) -> mean over the frames within ``radius`` of each frame (clipped at the ends)."""
    t_len = x.shape[1]
    idx = torch.arange(t_len)
    near = ((idx[:, None] - idx[None, :]).abs() <= radius).float()
    return (near @ x) / near.sum(1, keepdim=True)


def run_refiner(module: AdaptiveAttention, target_radius: int, steps: int) -> list[float]:
    """Train-mode passes on fresh noise; target = mean within ``target_radius``; returns the span track."""
    module.train()
    spans = []
    for _ in range(steps):
        x = torch.randn(8, 64, D)
        out, _ = module(x)
        loss = (out - neighbourhood_mean(x, target_radius)).pow(2).mean()
        module.span_refiner.observe_loss(float(loss.detach()))
        spans.append(float(module.span_refiner.span))
    return spans


def test_refiner_narrows_the_span_when_only_nearby_tokens_matter():
    torch.manual_seed(0)
    module = uniform_band_module(init=16)
    spans = run_refiner(module, target_radius=2, steps=480)
    late = sum(spans[-120:]) / 120
    assert late < 6, spans[::40]  # the loss is lowest at span 2
    assert min(spans) >= 1 and float(module.span_refiner.decisions) == 120


def test_refiner_widens_the_span_when_distant_tokens_matter():
    torch.manual_seed(0)
    module = uniform_band_module(init=3)
    spans = run_refiner(module, target_radius=64, steps=480)  # target: the whole-utterance mean
    late = sum(spans[-120:]) / 120
    assert late > 24, spans[::40]  # the loss falls all the way to max_span = 48


def test_refiner_state_survives_a_checkpoint_round_trip():
    torch.manual_seed(0)
    trained = uniform_band_module(init=16)
    run_refiner(trained, target_radius=2, steps=60)
    assert trained.span_refiner.q_table.abs().sum() > 0 and float(trained.span_refiner.span) != 16
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    fresh = uniform_band_module(init=16)
    fresh.load_state_dict(torch.load(buffer))
    for name, value in trained.span_refiner.named_buffers():
        torch.testing.assert_close(getattr(fresh.span_refiner, name), value, equal_nan=True, msg=name)
    assert fresh.span_refiner.half_width == trained.span_refiner.half_width
    x = torch.randn(2, 30, D)
    torch.testing.assert_close(fresh.eval()(x)[0], trained.eval()(x)[0])


def test_eval_mode_freezes_the_refiner():
    torch.manual_seed(0)
    module = uniform_band_module(init=10, interval=1, epsilon=1.0)
    run_refiner(module, target_radius=2, steps=5)
    module.eval()
    before = {name: value.clone() for name, value in module.span_refiner.named_buffers()}
    for loss in (5.0, 1.0, 0.1):
        module(torch.randn(2, 30, D))
        module.span_refiner.observe_loss(loss)
    for name, value in module.span_refiner.named_buffers():
        torch.testing.assert_close(value, before[name], equal_nan=True, msg=name)


def test_refiner_ignores_losses_until_it_has_statistics_and_validates_options():
    refiner = SpanRefiner(init=8, interval=1)
    refiner.observe_loss(1.0)  # no forward pass recorded yet: no decision
    assert float(refiner.decisions) == 0 and float(refiner.span) == 8
    with pytest.raises(ValueError, match="min_span <= init <= max_span"):
        SpanRefiner(init=1000, max_span=64)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("soft", [False, True])
def test_gathered_band_for_scattered_queries_matches_the_dense_band(causal, soft):
    from echo_plugin.nn.attention.local import gathered_band_attend

    q, k, v = qkv(23)
    index = torch.tensor([[0, 5, 22, 11], [14, 3, 7, 20]])
    q_sel = q.gather(2, index[:, None, :, None].expand(2, H, 4, 4))
    width = torch.rand(2, H, 4) * 3 if soft else None
    expected = dense_band_attend(q_sel, k, v, index, KEEP, causal, 3, width=width, tau=1.5)
    got = gathered_band_attend(q_sel, index, k, v, KEEP, causal, 3, width=width, tau=1.5)
    torch.testing.assert_close(got, expected)
    full = band_reference(q, k, v, KEEP, causal, 3)
    if not soft:
        expected_rows = full.gather(2, index[:, None, :, None].expand(2, H, 4, 4))
        torch.testing.assert_close(got, expected_rows, rtol=1e-4, atol=1e-5)


def test_routed_queries_with_a_span_equal_the_banded_main_path():
    routed = twin(span={"init": 3}, focus={"w_min": 1, "w_max": 5},
                  importance={"fraction": 0.25, "select": "topk", "cheap": "mean"})[1]
    banded = twin(span={"init": 3}, focus={"w_min": 1, "w_max": 5}, importance=False)[1]
    banded.focus.load_state_dict(routed.focus.state_dict())
    torch.manual_seed(5)
    x = torch.randn(2, 24, D)
    got, _ = routed(x)
    main, _ = banded(x)
    score = routed.importance.scorer(x).squeeze(-1)
    for b in range(2):
        top = score[b].topk(6).indices
        torch.testing.assert_close(got[b, top], main[b, top])
        rest = torch.tensor([t for t in range(24) if t not in set(top.tolist())])
        assert not torch.allclose(got[b, rest], main[b, rest], atol=1e-4)


@pytest.mark.parametrize("conf", [
    dict(span={"init": 3}, focus={"w_min": 1, "w_max": 5}),  # chunked band
    dict(span=False, focus=False, importance={"fraction": 0.3, "select": "topk", "received_weight": 0.5}),
    dict(span={"init": 4}, focus=False, importance={"fraction": 0.5, "cheap": "mean"}),
], ids=["span+focus", "topk+received", "span+threshold"])  # fmt: skip
def test_padding_never_changes_the_real_frames(conf):
    """A short utterance padded in a batch gives exactly its outputs alone (eval mode)."""
    _, adaptive = twin(**conf)
    torch.manual_seed(6)
    x = torch.randn(2, 30, D)
    keep = torch.ones(2, 30, dtype=torch.bool)
    keep[1, 17:] = False
    x[1, 17:] = 50.0  # loud padding
    batch, _ = adaptive(x, key_padding_mask=keep)
    alone, _ = adaptive(x[1:, :17])
    torch.testing.assert_close(batch[1, :17], alone[0], rtol=1e-4, atol=1e-5)
