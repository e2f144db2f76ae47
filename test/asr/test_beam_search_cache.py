"""Both attention decoders in ESPnet's beam search: the encoder memory's cross-attention keys/values
are projected once per utterance and shared by every hypothesis (finished ones included), and the
search finds what a search scoring every prefix by the full teacher-forced pass finds."""
from __future__ import annotations

from typing import Any, List, Tuple

import pytest
import torch
from torch import Tensor

from echo_plugin.asr.decoder.beam_cache import ProjectedMemory
from echo_plugin.asr.decoder.dual_decoder import DualCrossAttentionDecoder
from echo_plugin.asr.decoder.echo_decoder import EchoDecoder
from echo_plugin.espnet_legacy import BatchBeamSearch, BatchScorerInterface, BeamSearch

VOCAB, D, FRAMES, STEPS, BEAM = 13, 16, 23, 8, 4
EOS = VOCAB - 1
KINDS = ["echo", "dual"]


def build(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    sizes = dict(attention_heads=2, linear_units=32, num_blocks=2, dropout_rate=0.0)
    if kind == "dual":
        decoder = DualCrossAttentionDecoder(VOCAB, D, gate_hidden=8, **sizes)
    else:
        decoder = EchoDecoder(VOCAB, D, **sizes)
    with torch.no_grad():
        decoder.output_layer.bias[EOS] += 1.0  # hypotheses end along the way (9 of 13 / 17 before the last step)
    return decoder.eval()


def encoder_output() -> Tensor:
    torch.manual_seed(1)
    return torch.randn(FRAMES, D)


class FullForward(BatchScorerInterface):
    """The reference scorer: the decoder's teacher-forced pass over each whole prefix, no cache."""

    def __init__(self, decoder: torch.nn.Module) -> None:
        self.decoder = decoder

    def batch_score(self, ys: Tensor, states: List[Any], xs: Tensor) -> Tuple[Tensor, List[None]]:
        n = ys.size(0)
        logits, _ = self.decoder(xs, torch.full((n,), xs.size(1)), ys, torch.full((n,), ys.size(1)))
        return logits[:, -1].log_softmax(-1), [None] * n

    def score(self, ys: Tensor, state: Any, x: Tensor) -> Tuple[Tensor, None]:
        return self.batch_score(ys[None], [state], x[None])[0][0], None


def search(scorer: Any, batched: bool = True) -> Tuple[list, list]:
    """Beam 4, a fixed length of STEPS tokens: (the finished hypotheses best first, as the search
    returns them; the same as it kept them)."""
    ended: list = []
    cls = BatchBeamSearch if batched else BeamSearch

    class Search(cls):  # keeps the finished hypotheses
        def post_process(self, i, maxlen, minlen, maxlenratio, running_hyps, ended_hyps):
            out = super().post_process(i, maxlen, minlen, maxlenratio, running_hyps, ended_hyps)
            ended[:] = ended_hyps
            return out

    beam = Search(
        scorers={"decoder": scorer}, weights={"decoder": 1.0}, beam_size=BEAM, vocab_size=VOCAB, sos=EOS, eos=EOS
    )
    with torch.no_grad():
        nbest = beam(encoder_output(), maxlenratio=-float(STEPS), minlenratio=0.0)
    return nbest, ended


def tensors(obj: Any) -> List[Tensor]:
    if torch.is_tensor(obj):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in tensors(o)]
    return []


@pytest.mark.parametrize("kind", KINDS)
def test_memory_projected_once_and_shared_by_every_hypothesis(kind):
    decoder = build(kind)
    cross = [m for name, m in decoder.named_modules() if name.endswith(("cross_attn", "secondary_attn"))]
    assert len(cross) == (4 if kind == "dual" else 2)  # 2 layers
    projected: List[torch.Size] = []
    hooks = [m.key.register_forward_hook(lambda mod, inp, out: projected.append(inp[0].shape)) for m in cross]
    _, ended = search(decoder)
    for hook in hooks:
        hook.remove()
    # each cross-attention projected the memory once, for one hypothesis, in a search of STEPS steps
    assert projected == [torch.Size([1, FRAMES, D])] * len(cross)
    assert len(ended) > BEAM  # some hypotheses ended before the last step (ESPnet ends the others there)
    memory = ended[0].states["decoder"][0]
    assert isinstance(memory, ProjectedMemory)
    assert memory.caches[0][0][0].shape == (1, 2, FRAMES, D // 2)
    for hyp in ended:
        own = hyp.states["decoder"][1:]  # the row and the self-attention caches
        assert hyp.states["decoder"][0] is memory
        assert own[1] and all(FRAMES not in t.shape for t in tensors(own)), "a hypothesis holds memory-length tensors"


@pytest.mark.parametrize("batched", [True, False], ids=["BatchBeamSearch", "BeamSearch"])
@pytest.mark.parametrize("kind", KINDS)
def test_beam_search_finds_what_the_full_pass_finds(kind, batched):
    decoder = build(kind)
    nbest, _ = search(decoder, batched)
    reference, _ = search(FullForward(decoder), batched)
    assert len(nbest) > BEAM
    assert [h.yseq.tolist() for h in nbest] == [h.yseq.tolist() for h in reference]
    for got, want in zip(nbest, reference):
        torch.testing.assert_close(torch.as_tensor(got.score), torch.as_tensor(want.score), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_hypotheses_of_two_memories_scored_together(kind):
    """States from two separate first calls (two projected memories) gathered into one batch."""
    decoder = build(kind)
    torch.manual_seed(2)
    xs, ys = torch.randn(2, FRAMES, D), torch.randint(0, VOCAB, (2, 4))
    with torch.no_grad():
        _, first = decoder.batch_score(ys[:1, :3], [None], xs[:1])
        _, second = decoder.batch_score(ys[1:, :3], [None], xs[1:])
        assert first[0][0] is not second[0][0]
        logp, states = decoder.batch_score(ys, first + second, xs)
        logits, _ = decoder(xs, torch.full((2,), FRAMES), ys, torch.full((2,), 4))
    torch.testing.assert_close(logp, logits[:, -1].log_softmax(-1), rtol=1e-4, atol=1e-5)
    assert states[0][0] is states[1][0] and [s[1] for s in states] == [0, 1]
