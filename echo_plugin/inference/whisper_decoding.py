"""Whisper token types in ESPnet's Speech2Text: tokens, prompt, suppression, text.

For a model trained or packed with ``token_type: whisper_multilingual`` (or ``whisper_en``) and
``bpemodel`` the same, ESPnet's ``Speech2Text``

1. builds its tokenizer and token-id converter by token type: within :func:`building` these are
   :mod:`echo_plugin.text.whisper_tokens`' (ESPnet's own need the openai-whisper of early 2023);
2. primes its beam search with the converter's start-of-transcript prompt,
   ``<|startoftranscript|><|en|><|transcribe|><|notimestamps|>`` for ``preprocessor_conf``
   ``whisper_language: en``, ``whisper_task: transcribe`` (ESPnet's own step, unchanged);
3. gets Whisper's token suppression and sample length (224 new tokens at most) as one more scorer
   of its beam search (:func:`add_suppression`:
   :class:`~echo_plugin.asr.whisper_suppress.WhisperSuppression`, weight 1), so that with beam 1
   ESPnet's beam search decodes as openai-whisper's greedy search;
4. has each hypothesis' text rebuilt from its tokens (:func:`whisper_results`): ESPnet drops token
   id 0 as the CTC blank, which for Whisper is ``!``.

Used by :class:`echo_plugin.inference.speaker_speech2text.EchoSpeech2Text`; other token types
are left to ESPnet.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, List

from echo_plugin.asr.whisper_suppress import WhisperSuppression, add_to_beam_search, whisper_suppression
from echo_plugin.inference.forced_eos import Result, tokens_and_text
from echo_plugin.text.whisper_tokens import WhisperTokenIDConverter, espnet_whisper_text

SAMPLE_LEN = 224  # openai-whisper's default bound on new tokens: half of every Whisper model's 448 positions


def building() -> AbstractContextManager[None]:
    """The context to build ESPnet's Speech2Text in (Whisper token types on today's openai-whisper)."""
    return espnet_whisper_text()


def uses_whisper_tokens(speech2text: Any) -> bool:
    return isinstance(getattr(speech2text, "converter", None), WhisperTokenIDConverter)


def add_suppression(speech2text: Any) -> None:
    """Whisper's default suppression in the beam search of a Speech2Text with Whisper tokens (else nothing)."""
    beam_search = getattr(speech2text, "beam_search", None)
    if not uses_whisper_tokens(speech2text) or beam_search is None:
        return
    always, at_begin = whisper_suppression(speech2text.converter.tokenizer)
    primer = beam_search.hyp_primer or [beam_search.sos]
    scorer = WhisperSuppression(beam_search.n_vocab, len(primer), always, at_begin, beam_search.eos, SAMPLE_LEN)
    add_to_beam_search(beam_search, scorer)


def whisper_results(speech2text: Any, results: List[Result]) -> List[Result]:
    """ESPnet's results with token ids, tokens and text rebuilt from each hypothesis' full sequence
    (the prompt's and end's special ids stay in the ids, as ESPnet keeps them; no token is dropped)."""
    rebuilt = []
    for _, _, _, hyp in results:
        token_int = hyp.yseq[1:-1].tolist()
        tokens, text = tokens_and_text(speech2text, token_int)
        rebuilt.append((text, tokens, token_int, hyp))
    return rebuilt
