"""EchoDecoder: causality, KV-cached incremental scoring vs full forward, score vs batch_score."""
import torch

from echo_plugin.asr.decoder.echo_decoder import EchoDecoder
from echo_plugin.nn.rotary import NoRotary

VOCAB = 13


def tiny_decoder(**conf) -> EchoDecoder:
    torch.manual_seed(0)
    conf = {"attention_heads": 2, "linear_units": 32, "num_blocks": 2, **conf}
    return EchoDecoder(VOCAB, 16, **conf).eval()


def memory(batch: int = 2, frames: int = 9) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(batch, frames, 16)


def test_step_t_does_not_see_future_tokens():
    decoder = tiny_decoder()
    hs = memory()
    hlens = torch.tensor([9, 6])
    ys = torch.randint(0, VOCAB, (2, 7))
    lens = torch.tensor([7, 7])
    logits, olens = decoder(hs, hlens, ys, lens)
    assert logits.shape == (2, 7, VOCAB) and torch.equal(olens, lens)
    altered = ys.clone()
    altered[:, 4:] = (ys[:, 4:] + 1) % VOCAB
    changed, _ = decoder(hs, hlens, altered, lens)
    torch.testing.assert_close(changed[:, :4], logits[:, :4])
    assert not torch.allclose(changed[:, 4:], logits[:, 4:])


def test_memory_padding_is_ignored():
    decoder = tiny_decoder()
    hs = memory()
    ys = torch.randint(0, VOCAB, (2, 5))
    lens = torch.tensor([5, 3])
    hlens = torch.tensor([9, 6])
    logits, _ = decoder(hs, hlens, ys, lens)
    noisy = hs.clone()
    noisy[1, 6:] = 30.0
    torch.testing.assert_close(decoder(noisy, hlens, ys, lens)[0], logits)


def test_incremental_batch_score_equals_full_forward():
    decoder = tiny_decoder(tie_embeddings=True)
    assert decoder.output_layer.weight is decoder.embed.weight
    xs = memory(3)
    ys = torch.randint(0, VOCAB, (3, 6))
    full_lens = torch.full((3,), xs.size(1))
    logp, states = decoder.batch_score(ys[:, :2], [None] * 3, xs)  # first call: whole prefix
    for length in range(2, 7):
        if length > 2:
            logp, states = decoder.batch_score(ys[:, :length], states, xs)  # newest token only
        logits, _ = decoder(xs, full_lens, ys[:, :length], torch.full((3,), length))
        torch.testing.assert_close(logp, logits[:, -1].log_softmax(-1), rtol=1e-4, atol=1e-5)
        projected, row, self_caches = states[0]
        assert self_caches[0][0].shape == (2, length, 8) and row == 0
        assert projected.caches[0][0][0].shape == (3, 2, 9, 8)  # the 3 memories' keys, projected at the first call


def test_batch_score_reselects_states_like_beam_search():
    """Hypotheses re-ordered between steps (as BatchBeamSearch does) keep their own caches."""
    decoder = tiny_decoder()
    xs = memory(3)
    ys = torch.randint(0, VOCAB, (3, 4))
    _, states = decoder.batch_score(ys[:, :3], [None] * 3, xs)
    order = [2, 2, 0]
    states = [decoder.select_state(states, i) for i in order]
    logp, _ = decoder.batch_score(ys[order], states, xs[order])
    logits, _ = decoder(xs[order], torch.full((3,), 9), ys[order], torch.full((3,), 4))
    torch.testing.assert_close(logp, logits[:, -1].log_softmax(-1), rtol=1e-4, atol=1e-5)


def test_score_agrees_with_batch_score():
    decoder = tiny_decoder(norm="rms_norm", activation="relu")
    xs = memory(2)
    ys = torch.randint(0, VOCAB, (2, 5))
    batch_logp, batch_states = decoder.batch_score(ys[:, :4], [None, None], xs)
    batch_logp, _ = decoder.batch_score(ys, batch_states, xs)
    for b in range(2):
        logp, state = decoder.score(ys[b, :4], decoder.init_state(xs[b]), xs[b])
        logp, state = decoder.score(ys[b], state, xs[b])
        torch.testing.assert_close(logp, batch_logp[b], rtol=1e-4, atol=1e-5)
        assert logp.shape == (VOCAB,) and len(state[2]) == 2  # one self-attention cache per layer


def test_layer_groups_and_cross_attention_has_no_rotary():
    decoder = tiny_decoder(num_blocks=3, layers=[{"num": 1, "rotary": "none"}, {"num": 2}])
    assert isinstance(decoder.blocks[0].self_attn.rotary, NoRotary)
    assert not isinstance(decoder.blocks[1].self_attn.rotary, NoRotary)
    assert all(isinstance(block.cross_attn.rotary, NoRotary) for block in decoder.blocks)


def test_beam_states_survive_espnets_state_copy() -> None:
    """ESPnet 202611's batch beam search copies a finished hypothesis' state part by part with
    type(part)(iterable), cloning tensors: the states allow it, the copies score as the originals,
    and the projected memory they share passes through as the same object."""

    def copy(obj):  # what that copy does, for any ESPnet release
        if torch.is_tensor(obj):
            return obj.clone()
        if isinstance(obj, (tuple, list)):
            return type(obj)(copy(o) for o in obj)
        return obj

    decoder = tiny_decoder()
    xs = memory(3)
    ys = torch.randint(0, VOCAB, (3, 4))
    _, states = decoder.batch_score(ys[:, :3], [None] * 3, xs)
    copied = copy(states)
    assert all(c[0] is states[0][0] for c in copied)
    expected, _ = decoder.batch_score(ys, states, xs)
    torch.testing.assert_close(decoder.batch_score(ys, copied, xs)[0], expected, rtol=0, atol=0)
