"""The end token ESPnet's beam search doubles at its last step is dropped from Speech2Text's results.

The hypotheses come from ESPnet's real BatchBeamSearch, driven by a scorer that spells "ab" and then
ends exactly at the last step the encoder length allows (maxlenratio 0: as many steps as frames).
"""
from __future__ import annotations

from typing import Any

import torch
from espnet.nets.batch_beam_search import BatchBeamSearch
from espnet.nets.scorer_interface import BatchScorerInterface
from espnet2.text.char_tokenizer import CharTokenizer
from espnet2.text.token_id_converter import TokenIDConverter

from echo_plugin.inference.speaker_speech2text import EchoSpeech2Text

TOKENS = ["<blank>", "a", "b", "<sos/eos>", "<unk>"]
EOS = 3


class SpellThenEnd(BatchScorerInterface, torch.nn.Module):
    """Log-probabilities that pick ``spelling[k]`` after k tokens, then <sos/eos>."""

    def __init__(self, spelling: list[int]) -> None:
        super().__init__()
        self.spelling = spelling

    def batch_init_state(self, x: torch.Tensor) -> Any:
        return None

    def batch_score(self, ys: torch.Tensor, states: list, xs: torch.Tensor) -> tuple[torch.Tensor, list]:
        scores = torch.full((ys.shape[0], len(TOKENS)), -10.0)
        for row, prefix in enumerate(ys):
            k = prefix.shape[0] - 1  # tokens after <sos>
            scores[row, self.spelling[k] if k < len(self.spelling) else EOS] = 0.0
        return scores, [None] * ys.shape[0]


def speech2text(spelling: list[int]) -> EchoSpeech2Text:
    """An EchoSpeech2Text with ESPnet's beam search and converter, without a model (no __init__)."""
    s2t = EchoSpeech2Text.__new__(EchoSpeech2Text)
    s2t.beam_search = BatchBeamSearch(scorers={"decoder": SpellThenEnd(spelling)}, weights={"decoder": 1.0},
                                      beam_size=1, vocab_size=len(TOKENS), sos=EOS, eos=EOS, token_list=TOKENS)
    s2t.beam_search_transducer = None
    s2t.hugging_face_model = None
    s2t.maxlenratio, s2t.minlenratio, s2t.nbest = 0.0, 0.0, 1
    s2t.asr_model = torch.nn.Module()
    s2t.asr_model.use_transducer_decoder = False
    s2t.converter = TokenIDConverter(TOKENS)
    s2t.tokenizer = CharTokenizer()
    return s2t


def test_espnet_doubles_the_end_token_of_a_hypothesis_ending_at_the_last_step() -> None:
    """What the fix is for: 3 frames allow 3 steps; "a", "b", then <sos/eos> at the last one, and
    ESPnet's post-processing appends another."""
    s2t = speech2text([1, 2])
    [hyp] = s2t.beam_search(x=torch.zeros(3, 1), maxlenratio=0.0, minlenratio=0.0)
    assert hyp.yseq.tolist() == [EOS, 1, 2, EOS, EOS]


def test_the_doubled_end_token_is_dropped_from_the_text() -> None:
    [(text, tokens, token_int, hyp)] = speech2text([1, 2])._decode_single_sample(torch.zeros(3, 1))
    assert (text, tokens, token_int, hyp.yseq.tolist()) == ("ab", ["a", "b"], [1, 2], [EOS, 1, 2, EOS])


def test_an_empty_hypothesis_ending_at_the_last_step_is_empty() -> None:
    [(text, tokens, token_int, hyp)] = speech2text([])._decode_single_sample(torch.zeros(1, 1))
    assert (text, tokens, token_int, hyp.yseq.tolist()) == ("", [], [], [EOS, EOS])


def test_a_hypothesis_ending_before_the_last_step_is_unchanged() -> None:
    """With frames to spare the beam search ends the hypothesis itself: one end token, as before."""
    [(text, tokens, token_int, hyp)] = speech2text([1, 2])._decode_single_sample(torch.zeros(8, 1))
    assert (text, tokens, token_int, hyp.yseq.tolist()) == ("ab", ["a", "b"], [1, 2], [EOS, 1, 2, EOS])
