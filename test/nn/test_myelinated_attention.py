"""Myelinated attention: limits, routing, causality, padding, skipped compute, working memory, ESPnet build."""
import pytest
import torch

from echo_plugin.catalog import ATTENTION
from echo_plugin.nn.attention import myelinated as myelinated_module
from echo_plugin.nn.attention.memory import WorkingMemory
from echo_plugin.nn.attention.myelinated import CHEAP, FULL, MyelinatedAttention, select_frames
from echo_plugin.nn.layers import EncoderLayer, FeedForward
from test.asr.espnet_build import build_asr

D, H = 16, 4


def build(**conf) -> MyelinatedAttention:
    torch.manual_seed(0)
    return ATTENTION.build({"type": "myelinated", "conf": conf}, d_model=D, n_heads=H, rotary="standard")


def standard_twin(module: MyelinatedAttention):
    """A ``standard`` module holding the same projection weights."""
    std = ATTENTION.build("standard", d_model=D, n_heads=H, rotary="standard")
    missing = std.load_state_dict(module.state_dict(), strict=False)
    assert not missing.missing_keys
    return std


def route_all(module: MyelinatedAttention, path: int) -> None:
    """Make the learned policy pick ``path`` for every segment, whatever the input."""
    with torch.no_grad():
        module.policy[-1].weight.zero_()
        module.policy[-1].bias.fill_(-50.0)
        module.policy[-1].bias[path] = 50.0


def mixed_policy(module: MyelinatedAttention) -> None:
    """A policy whose choice depends on the content, so all three paths occur."""
    with torch.no_grad():
        module.policy[-1].weight.mul_(40.0)
        module.policy[-1].bias.zero_()


def batch(lengths=(12, 9, 5), frames=12):
    torch.manual_seed(1)
    x = torch.randn(len(lengths), frames, D)
    keep = torch.arange(frames)[None, :] < torch.tensor(lengths)[:, None]
    return x, keep


@pytest.mark.parametrize("causal", [False, True])
def test_skip_rate_zero_without_memory_is_standard_attention(causal):
    module = build(memory_slots=0, forced_skip_rate=0.0, segment=4).eval()
    std = standard_twin(module).eval()
    x, keep = batch()
    out, (k, v) = module(x, key_padding_mask=keep, causal=causal)
    ref, (k_ref, v_ref) = std(x, key_padding_mask=keep, causal=causal)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(k, k_ref)
    torch.testing.assert_close(v, v_ref)


def test_all_full_learned_policy_is_standard_attention_in_training_too():
    module = build(memory_slots=0, segment=3, dropout=0.0).train()
    route_all(module, FULL)
    std = standard_twin(module).train()
    x, keep = batch()
    out, _ = module(x, key_padding_mask=keep)
    real_segment = keep.view(3, -1, 3).any(-1).repeat_interleave(3, dim=1)  # padding-only segments skip
    torch.testing.assert_close(out[real_segment], std(x, key_padding_mask=keep)[0][real_segment])
    assert (out[~real_segment] == 0).all() and (~real_segment).any()
    torch.testing.assert_close(module.last_rates, torch.tensor([1.0, 0.0, 0.0]))


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.75])
def test_forced_skip_zeroes_skipped_frames_and_keeps_full_frames_exact(rate):
    segment = 2
    module = build(memory_slots=0, forced_skip_rate=rate, segment=segment).eval()
    std = standard_twin(module).eval()
    x, keep = batch(frames=16)
    out, _ = module(x, key_padding_mask=keep)
    ref, _ = std(x, key_padding_mask=keep)
    seg = torch.arange(16 // segment, dtype=torch.float64)
    skipped = (torch.floor((seg + 1) * rate) > torch.floor(seg * rate)).repeat_interleave(segment)
    assert skipped.float().mean() == rate
    assert (out[:, skipped] == 0).all()
    torch.testing.assert_close(out[:, ~skipped], ref[:, ~skipped])


def test_skipped_segments_are_never_computed(monkeypatch):
    rows = []
    original = myelinated_module.masked_attend

    def counting(q, *args, **kwargs):
        rows.append(q.shape[-2])
        return original(q, *args, **kwargs)

    monkeypatch.setattr(myelinated_module, "masked_attend", counting)
    x = torch.randn(2, 32, D)
    key_calls = []
    for rate, expected in [(0.0, 32), (0.5, 16), (0.75, 8)]:
        rows.clear()
        build(memory_slots=0, forced_skip_rate=rate, segment=4).eval()(x)
        assert rows == [expected]  # one kernel call over only the full frames' queries
    module = build(memory_slots=0, forced_skip_rate=1.0, segment=4).eval()
    module.key.register_forward_hook(lambda *_: key_calls.append(1))
    module.query.register_forward_hook(lambda *_: key_calls.append(1))
    rows.clear()
    out, (k, _) = module(x)
    assert rows == [] and key_calls == [] and (out == 0).all() and k.shape[2] == 0


def test_cheap_path_is_a_depthwise_conv_inside_each_segment():
    segment, kernel = 4, 3
    module = build(memory_slots=0, segment=segment, cheap_kernel=kernel).eval()
    route_all(module, CHEAP)
    with torch.no_grad():
        module.cheap_weight.copy_(torch.randn(D, kernel))
    x, keep = batch(lengths=(12, 7), frames=12)
    for causal in (False, True):
        out, _ = module(x, key_padding_mask=keep, causal=causal)
        values = module.value(x) * keep[..., None]
        expected = torch.zeros_like(values)
        left = kernel - 1 if causal else kernel // 2
        for t in range(12):
            for j in range(kernel):
                s = t + j - left
                if 0 <= s < 12 and s // segment == t // segment:
                    expected[:, t] += values[:, s] * module.cheap_weight[:, j]
        expected = module.out(expected)
        real_segment = (keep.view(2, -1, segment).any(-1)).repeat_interleave(segment, dim=1)
        torch.testing.assert_close(out[real_segment], expected[real_segment])
        assert (out[~real_segment] == 0).all()  # segments of padding only are skipped


@pytest.mark.parametrize("memory_slots", [0, 3])
def test_causal_output_never_depends_on_later_frames(memory_slots):
    module = build(memory_slots=memory_slots, segment=3).eval()
    mixed_policy(module)
    x, _ = batch(lengths=(12, 12), frames=12)
    out, _ = module(x, causal=True)
    assert 0 < module.last_rates[FULL] < 1 and module.last_rates[CHEAP] > 0
    for t in (4, 7, 10):
        changed = x.clone()
        changed[:, t:] = torch.randn_like(changed[:, t:]) * 5
        out2, _ = module(changed, causal=True)
        torch.testing.assert_close(out2[:, :t], out[:, :t])


def test_incremental_decoding_matches_the_causal_full_pass():
    module = build(memory_slots=2, segment=3).eval()
    mixed_policy(module)
    x, _ = batch(lengths=(10, 10), frames=10)
    full, (k_full, v_full) = module(x, causal=True)
    rates = module.last_rates
    assert (rates > 0).sum() >= 2
    cache, steps = None, []
    for t in range(10):
        out, cache = module(x[:, t : t + 1], causal=True, cache=cache)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), full)
    torch.testing.assert_close(cache[0], k_full)
    torch.testing.assert_close(cache[1], v_full)


def test_padding_is_respected_with_policy_and_memory():
    module = build(memory_slots=3, segment=3).eval()
    mixed_policy(module)
    x, keep = batch(lengths=(12, 7), frames=12)
    x[1, 7:] = 1e3  # loud padding must change nothing
    memory = WorkingMemory()
    out, _ = module(x, key_padding_mask=keep, memory=memory)
    alone_memory = WorkingMemory()
    alone, _ = module(x[1:, :7], memory=alone_memory)
    torch.testing.assert_close(out[1, :7], alone[0])
    torch.testing.assert_close(memory.state[1], alone_memory.state[0])


def test_working_memory_travels_between_layers_and_trains():
    layers = [
        EncoderLayer(build(memory_slots=2, segment=4), FeedForward(D, 32), D, dropout=0.0) for _ in range(2)
    ]
    x, keep = batch()
    positions = torch.arange(x.shape[1])
    memory = WorkingMemory()
    h = layers[0](x, keep, positions, memory=memory)
    first_state = memory.state
    assert first_state is not None and first_state.shape == (3, 2, D)
    out = layers[1](h, keep, positions, memory=memory)
    assert memory.state is not first_state
    out.sum().backward()
    write = layers[0].self_attn.write_gate.weight.grad  # layer 1's write reaches the loss through layer 2's read
    assert write is not None and write.abs().sum() > 0
    # the second layer reads the first one's write: other memory, other output
    memory2 = WorkingMemory(state=first_state.detach() + 1.0)
    other = layers[1](h.detach(), keep, positions, memory=memory2)
    assert not torch.allclose(other, out.detach())
    with pytest.raises(ValueError, match="not with causal"):
        layers[0].self_attn(x, causal=True, memory=WorkingMemory())
    with pytest.raises(ValueError, match="self-attention only"):
        layers[0].self_attn(x, x)


def test_compute_cost_penalty_reaches_the_policy_as_an_auxiliary_loss():
    module = build(memory_slots=0, segment=4, cost_weight=0.5).train()
    x, keep = batch()
    out, _ = module(x, key_padding_mask=keep)
    aux = module.take_auxiliary_losses()
    assert list(aux) == ["myelinated_cost"] and module.take_auxiliary_losses() == {}  # taken once
    ((out * 0.0).sum() + aux["myelinated_cost"]).backward()  # the task loss gives nothing: only the penalty
    got = [p.grad.clone() for p in module.policy.parameters()]
    module.zero_grad()
    # the same penalty, differentiated directly
    summary, real = module._summaries(module.value(x), keep, 0, 3, causal=False)
    probs = module.policy(summary).softmax(-1)
    cost = ((probs @ module.path_costs) * real).sum() / real.sum()
    torch.autograd.backward(0.5 * cost)
    for g, p in zip(got, module.policy.parameters()):
        torch.testing.assert_close(g, p.grad)
    torch.testing.assert_close(module.last_cost, cost.detach())
    torch.testing.assert_close(aux["myelinated_cost"].detach(), 0.5 * cost.detach())


def test_no_penalty_without_gradients_in_eval_or_at_zero_weight_and_untaken_ones_are_bounded(caplog):
    module = build(memory_slots=0, segment=4, cost_weight=0.5)
    x, keep = batch()
    module.eval()(x, key_padding_mask=keep)
    with torch.no_grad():
        module.train()(x, key_padding_mask=keep)
    build(memory_slots=0, segment=4, cost_weight=0.0).train()(x, key_padding_mask=keep)
    assert module.take_auxiliary_losses() == {}
    module(x, key_padding_mask=keep)
    module(x, key_padding_mask=keep)
    torch.testing.assert_close(module.take_auxiliary_losses()["myelinated_cost"].detach(), 2 * 0.5 * module.last_cost)
    with caplog.at_level("WARNING"):
        for _ in range(myelinated_module._UNTAKEN_LIMIT + 1):
            module(x[:1], key_padding_mask=keep[:1])
    assert "never taken" in caplog.text and module._untaken == 1


def test_straight_through_routing_trains_the_policy_from_the_task_loss():
    module = build(memory_slots=0, segment=4, cost_weight=0.0).train()
    x, keep = batch()
    out, _ = module(x, key_padding_mask=keep)
    out.pow(2).sum().backward()
    assert module.policy[0].weight.grad.abs().sum() > 0
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)


def test_select_frames_puts_selected_frames_first_in_order():
    index, valid = select_frames(torch.tensor([[False, True, True, False], [True, False, False, False]]))
    assert index[0].tolist() == [1, 2] and valid[0].tolist() == [True, True]
    assert index[1, 0] == 0 and valid[1].tolist() == [True, False]


ENCODER_CONF = (
    "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 3, input_layer: conv2d, layers: ["
    "{num: 2, attention: {type: myelinated, conf: {segment: 2, memory_slots: 2}}}, {num: 1, attention: standard}]}"
)
DECODER_CONF = (
    "{attention_heads: 2, linear_units: 32, num_blocks: 1, layers: ["
    "{num: 1, self_attention: {type: myelinated, conf: {segment: 2, memory_slots: 0}}}]}"
)


def test_espnet_model_from_yaml_trains_with_memory_across_layers(tmp_path):
    ASRTask, args, model = build_asr(tmp_path, ENCODER_CONF, DECODER_CONF)
    blocks = model.encoder.blocks
    assert [type(b.self_attn).__name__ for b in blocks] == ["MyelinatedAttention"] * 2 + ["MultiHeadAttention"]
    assert isinstance(model.decoder.blocks[0].self_attn, MyelinatedAttention)
    torch.manual_seed(1)
    speech, lengths = torch.randn(2, 40, 20), torch.tensor([40, 29])
    text, text_lengths = torch.tensor([[2, 3, 4, 5], [6, 2, -1, -1]]), torch.tensor([4, 2])
    model.train()
    loss, stats, _ = model(speech=speech, speech_lengths=lengths, text=text, text_lengths=text_lengths)
    assert torch.isfinite(loss)
    loss.backward()
    # layer 0's memory write only reaches the loss through layer 1's read: the memory travelled
    assert blocks[0].self_attn.write_gate.weight.grad.abs().sum() > 0
    assert blocks[0].self_attn.policy[0].weight.grad.abs().sum() > 0
    assert all(b.self_attn.last_rates is not None for b in blocks[:2])
    rebuilt = ASRTask.build_model(args)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    model.eval()
    mixed_policy(model.decoder.blocks[0].self_attn)
    with torch.no_grad():  # beam-search scoring, one token at a time, equals the teacher-forced pass
        enc, enc_lens = model.encode(speech[:1], lengths[:1])
        ys = torch.tensor([[7, 2, 3, 4, 5, 6]])
        logits, _ = model.decoder(enc, enc_lens, ys, torch.tensor([6]))
        state = None
        for t in range(6):
            logp, state = model.decoder.score(ys[0, : t + 1], state, enc[0])
            torch.testing.assert_close(logp, logits[0, t].log_softmax(-1))
