"""Greedy Whisper-style decoding with the Echo Whisper-layout model (``whisper_style`` encoder + ``dual`` decoder).

For running a warm-started model as Whisper (zero-shot checks, benchmarks): a prompt such as
``<|startoftranscript|><|en|><|transcribe|><|notimestamps|>``, then the arg-max token at each
step through the decoder's KV-cached :meth:`batch_score`, until ``<|endoftext|>``. The token
suppression of openai-whisper's default ``DecodingOptions`` (``suppress_tokens="-1"``,
``suppress_blank=True``; faster-whisper's defaults too) comes from
:func:`~echo_plugin.asr.whisper_suppress.whisper_suppression` given openai-whisper's tokenizer
(importable from here too). ESPnet's beam search applies the same suppression with
:class:`~echo_plugin.asr.whisper_suppress.WhisperSuppression`.
"""
from __future__ import annotations

from typing import Any, List, Sequence

import torch
from torch import Tensor

from echo_plugin.asr.whisper_suppress import whisper_suppression

__all__ = ["encode_mel", "greedy_decode", "whisper_suppression"]


@torch.no_grad()
def encode_mel(encoder: torch.nn.Module, mel: Tensor) -> Tensor:
    """mel (B, n_mels, T) as openai-whisper's log_mel_spectrogram gives -> encoder output (B, T', D)."""
    lengths = torch.full((mel.size(0),), mel.size(-1), dtype=torch.long, device=mel.device)
    return encoder(mel.transpose(1, 2), lengths)[0]


@torch.no_grad()
def greedy_decode(
    decoder: torch.nn.Module,
    memory: Tensor,
    prompt: Sequence[int],
    eot: int,
    max_new_tokens: int = 224,
    suppress: Sequence[int] = (),
    suppress_at_begin: Sequence[int] = (),
) -> List[List[int]]:
    """Greedy continuation of ``prompt`` for each row of ``memory`` (B, T, D); the new tokens, ``eot`` excluded.

    ``decoder`` is a :class:`DualCrossAttentionDecoder` (anything with its ``batch_score``).
    """
    batch = memory.size(0)
    ys = torch.tensor([list(prompt)] * batch, dtype=torch.long, device=memory.device)
    states: List[Any] = [None] * batch
    done = torch.zeros(batch, dtype=torch.bool, device=memory.device)
    always = torch.tensor(list(suppress), dtype=torch.long, device=memory.device)
    begin = torch.tensor(list(suppress_at_begin), dtype=torch.long, device=memory.device)
    for step in range(max_new_tokens):
        logp, states = decoder.batch_score(ys, states, memory)
        if always.numel():
            logp[:, always] = float("-inf")
        if step == 0 and begin.numel():
            logp[:, begin] = float("-inf")
        token = logp.argmax(dim=-1).masked_fill(done, eot)
        ys = torch.cat([ys, token[:, None]], dim=1)
        done |= token == eot
        if bool(done.all()):
            break
    out = []
    for row in ys[:, len(prompt) :].tolist():
        out.append(row[: row.index(eot)] if eot in row else row)
    return out
