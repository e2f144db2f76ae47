"""Whisper's token suppression and sample length as an ESPnet beam-search scorer.

openai-whisper's default ``DecodingOptions`` (``suppress_tokens="-1"``, ``suppress_blank=True``;
faster-whisper's defaults too) never let the model sample:

- at any step: the non-speech symbols (``tokenizer.non_speech_tokens``), ``<|transcribe|>``,
  ``<|translate|>``, ``<|startoftranscript|>``, ``<|startofprev|>``, ``<|startoflm|>`` and
  ``<|nospeech|>`` (:func:`whisper_suppression`, as its ``DecodingTask._get_suppress_tokens``);
- at the first sampled step (right after the prompt): a lone space and ``<|endoftext|>``
  (its ``SuppressBlank``), so a transcript is never empty;

and it stops a hypothesis after ``sample_len`` new tokens (``n_text_ctx // 2`` = 224).

:class:`WhisperSuppression` gives those tokens a score of -inf and every other token 0 (after
``max_new_tokens``: -inf to all but ``<|endoftext|>``); added to ESPnet's beam search with weight 1
(:func:`add_to_beam_search`) it removes them from every hypothesis' candidates, which for a beam of
one is exactly openai-whisper's greedy decoding. With the length bound here ESPnet's own end
detection (``maxlenratio: 0``) can end the search: no hypothesis outgrows Whisper's 448 positions.
The decoder's log-probabilities are not renormalised over the tokens left (Whisper's beam search
does renormalise), which changes the scores of wider beams slightly, not the tokens allowed.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from echo_plugin.espnet_legacy import BatchScorerInterface

SCORER_NAME = "whisper_suppress"


def whisper_suppression(tokenizer: Any) -> Tuple[List[int], List[int]]:
    """(suppressed at every step, suppressed at the first sampled step) as openai-whisper's DecodingTask.

    ``tokenizer``: an openai-whisper ``whisper.tokenizer.Tokenizer``.
    """
    always = set(tokenizer.non_speech_tokens)
    always |= {tokenizer.transcribe, tokenizer.translate, tokenizer.sot, tokenizer.sot_prev, tokenizer.sot_lm}
    if tokenizer.no_speech is not None:
        always.add(tokenizer.no_speech)
    return sorted(always), list(tokenizer.encode(" ")) + [tokenizer.eot]


class WhisperSuppression(BatchScorerInterface):
    """Scores (V,): -inf for the suppressed tokens, 0 elsewhere; stateless.

    Args:
        n_vocab: V.  prompt_length: tokens of the prompt (the first sampled step follows them).
        always: ids suppressed at every step.  at_begin: ids suppressed at the first sampled step too.
        eos: ``<|endoftext|>``, the only token allowed once a hypothesis has ``max_new_tokens`` new tokens
            (None: no bound).
    """

    def __init__(self, n_vocab: int, prompt_length: int, always: Sequence[int], at_begin: Sequence[int],
                 eos: Optional[int] = None, max_new_tokens: Optional[int] = None) -> None:
        bad = [i for i in [*always, *at_begin, *([eos] if eos is not None else [])] if not 0 <= i < n_vocab]
        if bad:
            raise ValueError(f"suppressed token ids {bad[:5]} are outside the vocabulary of {n_vocab}")
        if (eos is None) != (max_new_tokens is None):
            raise ValueError("eos and max_new_tokens go together")
        self.prompt_length = prompt_length
        self.max_length = prompt_length + max_new_tokens if max_new_tokens is not None else None
        self.mask = torch.zeros(n_vocab)
        self.mask[list(always)] = float("-inf")
        self.begin_mask = self.mask.clone()
        self.begin_mask[list(at_begin)] = float("-inf")
        self.end_mask = torch.full((n_vocab,), float("-inf"))
        if eos is not None:
            self.end_mask[eos] = 0.0

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, n_vocab: int, max_new_tokens: Optional[int] = 224) -> WhisperSuppression:
        """openai-whisper's default suppression and sample length for its ``tokenizer`` and its prompt."""
        always, at_begin = whisper_suppression(tokenizer)
        eos = tokenizer.eot if max_new_tokens is not None else None
        return cls(n_vocab, len(tokenizer.sot_sequence_including_notimestamps), always, at_begin, eos,
                   max_new_tokens)

    def _mask(self, length: int, like: Tensor) -> Tensor:
        """The scores of the token after a prefix of ``length`` tokens (prompt included)."""
        if self.max_length is not None and length >= self.max_length:
            mask = self.end_mask
        elif length == self.prompt_length:
            mask = self.begin_mask
        else:
            mask = self.mask
        return mask.to(device=like.device, dtype=like.dtype)

    def score(self, y: Tensor, state: Any, x: Tensor) -> Tuple[Tensor, None]:
        """y (L,) prefix -> scores (V,) of the next token, no state."""
        return self._mask(y.size(0), x), None

    def batch_score(self, ys: Tensor, states: List[Any], xs: Tensor) -> Tuple[Tensor, List[None]]:
        """ys (N, L) prefixes of one length -> scores (N, V), no states."""
        return self._mask(ys.size(1), xs).expand(ys.size(0), -1), [None] * ys.size(0)


def add_to_beam_search(beam_search: Any, scorer: WhisperSuppression, name: str = SCORER_NAME) -> None:
    """Make ``scorer`` one of the beam search's full scorers, with weight 1.

    ESPnet's ``Speech2Text`` builds its ``BeamSearch`` from a fixed set of scorers; the beam search
    keeps them in three dicts (scorers, full scorers, weights) that every step reads.
    """
    if name in beam_search.scorers:
        raise ValueError(f"the beam search already has a scorer named {name}")
    beam_search.scorers[name] = scorer
    beam_search.full_scorers[name] = scorer
    beam_search.weights[name] = 1.0
