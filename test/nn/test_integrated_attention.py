"""Integrated attention: limits, branches vs explicit references, gate loop, causality, padding, cost, ESPnet build."""
import math

import pytest
import torch

from echo_plugin.catalog import ATTENTION
from echo_plugin.nn.attention import integrated as integrated_module
from echo_plugin.nn.attention.integrated import IntegratedAttention, explicit_attend
from echo_plugin.nn.attention.kernel import attend_reference
from echo_plugin.nn.attention.standard import AttentionCall
from test.asr.espnet_build import build_asr

D, H = 16, 4


def build(**conf) -> IntegratedAttention:
    torch.manual_seed(0)
    return ATTENTION.build({"type": "integrated", "conf": conf}, d_model=D, n_heads=H, rotary="standard")


def standard_twin(module: IntegratedAttention):
    std = ATTENTION.build("standard", d_model=D, n_heads=H, rotary="standard")
    assert not std.load_state_dict(module.state_dict(), strict=False).missing_keys
    return std.eval()


def batch(lengths=(13, 9, 4), frames=13):
    torch.manual_seed(1)
    x = torch.randn(len(lengths), frames, D)
    keep = torch.arange(frames)[None, :] < torch.tensor(lengths)[:, None]
    return x, keep


def projected(module: IntegratedAttention, x: torch.Tensor):
    """Rotated q, k and v (B, H, T, dh) as the module computes them."""
    call = AttentionCall(module, x)
    return call.q, call.k, call.v


@pytest.mark.parametrize("causal", [False, True])
def test_gate_fully_global_with_every_key_is_standard_attention(causal):
    module = build(fixed_gate=1.0, global_stride=1).eval()
    x, keep = batch()
    out, (k, v) = module(x, key_padding_mask=keep, causal=causal)
    ref, (k_ref, v_ref) = standard_twin(module)(x, key_padding_mask=keep, causal=causal)
    torch.testing.assert_close(out[keep], ref[keep])
    torch.testing.assert_close(k, k_ref)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [12, 13, 100])
def test_local_window_covering_the_sequence_is_standard_attention(causal, window):
    module = build(fixed_gate=0.0, window=window).eval()
    x, keep = batch()
    out, _ = module(x, key_padding_mask=keep, causal=causal)
    ref, _ = standard_twin(module)(x, key_padding_mask=keep, causal=causal)
    torch.testing.assert_close(out[keep], ref[keep])


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [0, 2, 5])
def test_blocked_local_branch_equals_a_banded_reference(causal, window):
    module = build(window=window).eval()
    x, keep = batch()
    q, k, v = projected(module, x)
    out, entropy = module._local_blocked(q, k, v, keep, causal, 0.0)
    i = torch.arange(13)[:, None]
    j = torch.arange(13)[None, :]
    band = ((i - j).abs() <= window) & ((i >= j) if causal else True)
    bias = torch.zeros(13, 13).masked_fill(~band, float("-inf"))
    ref = attend_reference(q, k, v, keep, bias=bias)
    torch.testing.assert_close(out[keep[:, None].expand(-1, H, -1)], ref[keep[:, None].expand(-1, H, -1)])
    # entropy of the reference weights, normalised by log(visible keys)
    visible = band & keep[:, None, None, :]
    p = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(~visible, float("-inf")).softmax(-1)
    h = -(torch.where(visible, p * p.clamp_min(1e-30).log(), 0.0)).sum(-1)
    expected = h / visible.sum(-1).clamp(min=2).float().log()
    mask = keep[:, None].expand(-1, H, -1)
    torch.testing.assert_close(entropy[mask], expected[mask])
    # the dense fallback (decoder cache / score bias) is the same band
    dense, dense_entropy = module._local_dense(q, k, v, keep, causal, None, 0, 0.0)
    torch.testing.assert_close(dense[mask], out[mask])
    torch.testing.assert_close(dense_entropy[mask], entropy[mask])


@pytest.mark.parametrize("causal", [False, True])
def test_pooled_global_branch_equals_attention_to_block_means(causal):
    stride = 3
    module = build(global_stride=stride).eval()
    x, keep = batch()
    q, k, v = projected(module, x)
    out, _ = module._global(q, k, v, keep, causal, None, 0, 0.0)
    blocks = math.ceil(13 / stride)
    pk, pv = torch.zeros(3, H, blocks, 4), torch.zeros(3, H, blocks, 4)
    real = torch.zeros(3, blocks, dtype=torch.bool)
    for b in range(3):
        for j in range(blocks):
            frames = [t for t in range(j * stride, min((j + 1) * stride, 13)) if keep[b, t]]
            if frames:
                pk[b, :, j], pv[b, :, j], real[b, j] = k[b, :, frames].mean(1), v[b, :, frames].mean(1), True
    bias = torch.zeros(13, blocks)
    if causal:  # a block is visible once all its frames are past
        done = (torch.arange(blocks)[None, :] + 1) * stride - 1 <= torch.arange(13)[:, None]
        bias = bias.masked_fill(~done, float("-inf"))
    ref = attend_reference(q, pk, pv, real, bias=bias)
    sees = (bias > float("-inf")).any(-1)  # the first stride - 1 queries see no finished block
    mask = (keep & sees)[:, None].expand(-1, H, -1)
    torch.testing.assert_close(out[mask], ref[mask])
    assert (out[:, :, ~sees] == 0).all()


def test_global_keys_widen_the_stride_to_cap_the_pooled_keys():
    capped = build(global_stride=2, global_keys=4).eval()
    wide = build(global_stride=4).eval()  # ceil(13 / 4) = 4 > 2: the same pooling
    x, keep = batch()
    q, k, v = projected(capped, x)
    torch.testing.assert_close(
        capped._global(q, k, v, keep, False, None, 0, 0.0)[0], wide._global(q, k, v, keep, False, None, 0, 0.0)[0]
    )
    with pytest.raises(ValueError, match="not causal"):
        capped(x, causal=True)


def test_gate_reads_branch_entropies():
    module = build(window=2, global_stride=2).eval()
    x, keep = batch()
    q, k, v = projected(module, x)
    _, local_entropy = module._local_blocked(q, k, v, keep, False, 0.0)
    _, global_entropy = module._global(q, k, v, keep, False, None, 0, 0.0)
    with torch.no_grad():
        module.gate_x.weight.normal_()
        module.gate_quality.normal_()
    local, _ = module._local_blocked(q, k, v, keep, False, 0.0)
    glob, _ = module._global(q, k, v, keep, False, None, 0, 0.0)
    logits = module.gate_x(x).transpose(1, 2) + module.gate_quality[:, 0, None] * local_entropy
    logits = logits + module.gate_quality[:, 1, None] * global_entropy
    g = torch.sigmoid(logits)[..., None]
    expected = module.out((g * glob + (1 - g) * local).transpose(1, 2).flatten(2))
    out, _ = module(x, key_padding_mask=keep)
    torch.testing.assert_close(out, expected)


def test_forward_backward_reaches_gate_and_both_branches():
    module = build(window=3, global_stride=2, dropout=0.1).train()
    x, keep = batch()
    x.requires_grad_()
    out, _ = module(x, key_padding_mask=keep)
    out.pow(2).sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert module.gate_quality.grad.abs().sum() > 0 and module.gate_x.weight.grad.abs().sum() > 0
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("stride", [1, 3])
def test_causal_never_sees_the_future_and_decoding_matches(stride):
    module = build(window=3, global_stride=stride).eval()
    with torch.no_grad():
        module.gate_x.weight.normal_()
    x, _ = batch(lengths=(13, 13), frames=13)
    full, (k_full, _) = module(x, causal=True)
    for t in (3, 7, 11):
        changed = x.clone()
        changed[:, t:] = torch.randn_like(changed[:, t:]) * 5
        torch.testing.assert_close(module(changed, causal=True)[0][:, :t], full[:, :t])
    cache, steps = None, []
    for t in range(13):
        out, cache = module(x[:, t : t + 1], causal=True, cache=cache)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), full)
    torch.testing.assert_close(cache[0], k_full)


def test_padding_is_respected():
    module = build(window=3, global_stride=3).eval()
    x, keep = batch(lengths=(13, 8), frames=13)
    x[1, 8:] = 1e3
    out, _ = module(x, key_padding_mask=keep)
    alone, _ = module(x[1:, :8])
    torch.testing.assert_close(out[1, :8], alone[0])


def test_local_branch_never_builds_a_t_by_t_score_matrix(monkeypatch):
    key_counts = []
    original = explicit_attend

    def recording(q, k, *args, **kwargs):
        key_counts.append((q.shape[-2], k.shape[-2]))
        return original(q, k, *args, **kwargs)

    monkeypatch.setattr(integrated_module, "explicit_attend", recording)
    module = build(window=4, global_stride=8).eval()
    module(torch.randn(1, 200, D))
    (local_q, local_k), (global_q, global_k) = key_counts
    assert (local_q, local_k) == (4, 12)  # blocks of w queries against 3 w keys
    assert (global_q, global_k) == (200, 25)  # every query against T / stride pooled keys


ENCODER_CONF = (
    "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 2, input_layer: conv2d, layers: ["
    "{num: 1, attention: {type: integrated, conf: {window: 2, global_stride: 2}}}, {num: 1, attention: standard}]}"
)
DECODER_CONF = (
    "{attention_heads: 2, linear_units: 32, num_blocks: 1, layers: ["
    "{num: 1, self_attention: {type: integrated, conf: {window: 2, global_stride: 2}}}]}"
)


def test_espnet_model_from_yaml_trains_and_decodes(tmp_path):
    ASRTask, args, model = build_asr(tmp_path, ENCODER_CONF, DECODER_CONF)
    assert isinstance(model.encoder.blocks[0].self_attn, IntegratedAttention)
    assert isinstance(model.decoder.blocks[0].self_attn, IntegratedAttention)
    torch.manual_seed(1)
    speech, lengths = torch.randn(2, 40, 20), torch.tensor([40, 29])
    text, text_lengths = torch.tensor([[2, 3, 4, 5], [6, 2, -1, -1]]), torch.tensor([4, 2])
    model.train()
    loss, _, _ = model(speech=speech, speech_lengths=lengths, text=text, text_lengths=text_lengths)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.encoder.blocks[0].self_attn.gate_quality.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():  # incremental scoring equals the teacher-forced pass
        enc, enc_lens = model.encode(speech[:1], lengths[:1])
        ys = torch.tensor([[7, 2, 3, 4]])
        logits, _ = model.decoder(enc, enc_lens, ys, torch.tensor([4]))
        state = None
        for t in range(4):
            logp, state = model.decoder.score(ys[0, : t + 1], state, enc[0])
            torch.testing.assert_close(logp, logits[0, t].log_softmax(-1))
