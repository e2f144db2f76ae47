"""Drop the second end token that ESPnet's beam search gives a hypothesis ending at its last step.

With ``maxlenratio: 0`` ESPnet's (Batch)BeamSearch runs at most as many steps as the encoder has
frames, and at the last step it appends ``<sos/eos>`` to every running hypothesis "to avoid that
there are no ended hyps", also to one that has just chosen ``<sos/eos>`` itself at that very step.
Speech2Text strips one end token (``yseq[1:-1]``) and the other stays in the text: ``SIX<sos/eos>``,
a word error on a recognised word. Short clips meet it: the FSDD default (whisper-base front end,
25 encoder frames a second) wrote it into 97 of its 7500 isolated-digit first-pass hypotheses over
15 runs (nicolas 19-22 of 500 a seed; none of the connected ones).

The appended token is never scored, so dropping it changes the text only, never which hypothesis
wins.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

Result = Tuple[Optional[str], List[str], List[int], Any]
"""One of Speech2Text's n-best: (text, tokens, token ids, ESPnet Hypothesis)."""


def drop_forced_eos(speech2text: Any, results: List[Result]) -> List[Result]:
    """``results`` with each doubled final end token removed from the hypothesis, its ids, tokens
    and text (rebuilt with the Speech2Text's converter and tokenizer); other results unchanged."""
    if speech2text.beam_search is None:  # transducer and Hugging Face decoding: no forced end token
        return results
    eos = speech2text.beam_search.eos
    fixed = []
    for text, tokens, token_int, hyp in results:
        yseq = hyp.yseq
        if len(yseq) >= 3 and int(yseq[-1]) == eos and int(yseq[-2]) == eos:
            hyp = hyp._replace(yseq=yseq[:-1])
            if token_int and token_int[-1] == eos:
                token_int = token_int[:-1]
            tokens, text = tokens_and_text(speech2text, token_int)
        fixed.append((text, tokens, token_int, hyp))
    return fixed


def tokens_and_text(speech2text: Any, token_int: List[int]) -> Tuple[List[str], Optional[str]]:
    """Token ids -> tokens and text, as Speech2Text converts them (text None without a tokenizer)."""
    tokens = speech2text.converter.ids2tokens(token_int)
    return tokens, speech2text.tokenizer.tokens2text(tokens) if speech2text.tokenizer is not None else None
