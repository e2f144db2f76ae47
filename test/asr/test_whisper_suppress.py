"""Whisper's suppression and sample length as an ESPnet scorer, inside ESPnet's own beam searches.

A toy decoder over 10 tokens prefers suppressed tokens: ESPnet's BatchBeamSearch and BeamSearch,
primed with a 2-token prompt and given WhisperSuppression (weight 1), never emit them, never end
at the first step (eos suppressed there), and end at the bound when the decoder never would.
The suppression lists equal openai-whisper's DecodingTask's.
"""
from __future__ import annotations

from typing import Any, List, Tuple

import pytest
import torch

from echo_plugin.asr.whisper_suppress import WhisperSuppression, add_to_beam_search, whisper_suppression
from echo_plugin.espnet_legacy import BatchBeamSearch, BatchScorerInterface, BeamSearch

V, SOS, EOS, LANG = 10, 8, 9, 7
ALWAYS, AT_BEGIN = [2, 3], [1, EOS]


class Toy(BatchScorerInterface):
    """Log-probs of the next token from a fixed preference: ``order`` first (best first), eos from step ``end``."""

    def __init__(self, order: List[int], end: int) -> None:
        self.order, self.end = order, end

    def _logp(self, length: int) -> torch.Tensor:
        scores = torch.full((V,), -20.0)
        for rank, token in enumerate(self.order):
            scores[token] = -float(rank)
        if length >= self.end:
            scores[EOS] = 1.0
        return scores.log_softmax(-1)

    def score(self, y: torch.Tensor, state: Any, x: torch.Tensor) -> Tuple[torch.Tensor, Any]:
        return self._logp(y.size(0)), None

    def batch_score(self, ys: torch.Tensor, states: List[Any], xs: torch.Tensor) -> Tuple[torch.Tensor, Any]:
        return torch.stack([self._logp(ys.size(1))] * ys.size(0)), None


def search(kind, decoder: Toy, beam: int, **suppression: Any) -> List[List[int]]:
    searcher = kind(scorers={"decoder": decoder}, weights={"decoder": 1.0}, beam_size=beam, vocab_size=V,
                    sos=SOS, eos=EOS, token_list=[str(i) for i in range(V)], pre_beam_score_key="full")
    searcher.set_hyp_primer([SOS, LANG])
    add_to_beam_search(searcher, WhisperSuppression(V, 2, ALWAYS, AT_BEGIN, **suppression))
    hyps = searcher(torch.zeros(30, 4), maxlenratio=0.0)
    return [h.yseq.tolist()[2:] for h in hyps]


@pytest.mark.parametrize("kind", [BatchBeamSearch, BeamSearch])
def test_suppressed_tokens_never_appear(kind) -> None:
    toy = Toy(order=[2, 1, 3, 4, 5, 6], end=4)  # prefers 2 (always suppressed), then 1 (suppressed at first)
    best = search(kind, toy, beam=1)[0]
    assert best == [4, 1, EOS]  # first step: 2, 1, 3 and eos out; then 1 is allowed; eos after 4 tokens
    for hyp in search(kind, toy, beam=3):
        assert not set(hyp) & set(ALWAYS) and hyp[0] not in AT_BEGIN


@pytest.mark.parametrize("kind", [BatchBeamSearch, BeamSearch])
def test_the_sample_length_ends_every_hypothesis(kind) -> None:
    never_ends = Toy(order=[4, 5, 6], end=10**6)
    for hyp in search(kind, never_ends, beam=2, eos=EOS, max_new_tokens=5):
        assert len(hyp) == 6 and hyp[-1] == EOS  # 5 new tokens, then eos forced


def test_scores_per_position() -> None:
    scorer = WhisperSuppression(V, 2, ALWAYS, AT_BEGIN, eos=EOS, max_new_tokens=3)
    x = torch.zeros(5, 4)
    first, _ = scorer.score(torch.tensor([SOS, LANG]), None, x)
    assert torch.isinf(first[ALWAYS + AT_BEGIN]).all() and (first[[0, 4, 5, 6, 7, 8]] == 0).all()
    prefixes = torch.tensor([[SOS, LANG, 4], [SOS, LANG, 5]])
    later, _ = scorer.batch_score(prefixes, [None, None], x[None].expand(2, -1, -1))
    assert later.shape == (2, V) and torch.isinf(later[:, ALWAYS]).all() and (later[:, [1, EOS]] == 0).all()
    last, _ = scorer.score(torch.tensor([SOS, LANG, 4, 4, 4]), None, x)
    assert last[EOS] == 0 and torch.isinf(last[:EOS]).all()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        WhisperSuppression(V, 2, [V], [])


def test_lists_are_openai_whispers() -> None:
    whisper = pytest.importorskip("whisper", reason="openai-whisper: pip install openai-whisper")
    from whisper.decoding import DecodingOptions, DecodingTask, SuppressBlank, SuppressTokens
    from whisper.model import ModelDimensions, Whisper

    tokenizer = whisper.tokenizer.get_tokenizer(True, num_languages=99, language="en", task="transcribe")
    dims = ModelDimensions(n_mels=80, n_audio_ctx=4, n_audio_state=8, n_audio_head=1, n_audio_layer=1,
                           n_vocab=51865, n_text_ctx=448, n_text_state=8, n_text_head=1, n_text_layer=1)
    task = DecodingTask(Whisper(dims), DecodingOptions(language="en", without_timestamps=True))
    filters = {type(f): f for f in task.logit_filters}
    always, at_begin = whisper_suppression(tokenizer)
    assert always == sorted(filters[SuppressTokens].suppress_tokens)
    assert filters[SuppressBlank].sample_begin == len(tokenizer.sot_sequence_including_notimestamps)
    assert at_begin == tokenizer.encode(" ") + [tokenizer.eot] and task.sample_len == 224
