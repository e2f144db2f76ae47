"""Unsupervised speaker adaptation: fine-tune on a speaker's own first-pass hypotheses.

The end-to-end counterpart of Kaldi's speaker-adaptive second pass (first-pass
lattices -> fMLLR -> decode again): the test speaker's audio, never its transcripts,
adapts the model. For one speaker:

1. pseudo-labels: the first-pass hypotheses, with ``select: agree`` only those that
   the CTC branch's greedy output confirms word for word (a cheap confidence filter;
   ``all`` keeps every non-empty hypothesis);
2. a few epochs of the model's own training loss (CTC + attention, with its dropout
   and SpecAugment) on those utterances, every parameter or those matching ``params``;
3. the speaker's utterances are decoded again with the adapted weights;
4. with ``rounds: N > 1``, steps 1-3 repeat: the labels come from the last round's
   hypotheses (confirmed by the adapted model's CTC branch), and each round adapts the
   original weights again, so errors of one round's weights are not compounded (Kaldi's
   second fMLLR pass re-estimates from better alignments in the same way).

``adapt_and_decode`` runs the rounds and leaves the original weights in place.

Shapes: ``speech`` (samples,) float32 at the model's rate; ``spk_stats`` (2, D)
speaker statistics for ``normalize: speaker_mvn`` models, else None.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from echo_plugin.asr.normalize.speaker_mvn import STATS_KEY

SELECT_MODES = ("agree", "all")


@dataclass(frozen=True)
class AdaptConfig:
    """How one speaker's model is adapted (``conf/adapt.yaml`` in a recipe)."""

    epochs: int = 3
    lr: float = 1.0e-4
    batch_size: int = 8
    grad_clip: float = 5.0
    select: str = "agree"
    params: str = ""  # regex over parameter names (re.search); empty: every parameter
    seed: int = 0
    rounds: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.rounds < 1 or self.lr <= 0:
            raise ValueError(f"epochs, batch_size and rounds must be >= 1 and lr > 0, got {self}")
        if self.select not in SELECT_MODES:
            raise ValueError(f"select must be one of {SELECT_MODES}, got {self.select!r}")
        re.compile(self.params)


@dataclass(frozen=True)
class Utterance:
    """One utterance of the speaker: id, samples (N,), speaker statistics (2, D) or None."""

    key: str
    speech: np.ndarray
    spk_stats: Optional[np.ndarray]


def _stats_kwargs(stats: Sequence[Optional[np.ndarray]]) -> dict:
    """The model's ``spk_stats`` batch key (B, 2, D), or nothing when the utterances carry none."""
    if all(s is None for s in stats):
        return {}
    if any(s is None for s in stats):
        raise ValueError("speaker statistics given for some utterances of a batch but not others")
    return {STATS_KEY: torch.stack([torch.as_tensor(s, dtype=torch.float32) for s in stats])}


def _pad(arrays: Sequence[torch.Tensor], value: float) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(a) for a in arrays])
    return torch.nn.utils.rnn.pad_sequence(list(arrays), batch_first=True, padding_value=value), lengths


@torch.no_grad()
def ctc_greedy(model: torch.nn.Module, utt: Utterance) -> list[int]:
    """Token ids of the CTC branch's best path (repeats merged, blanks (id 0) dropped)."""
    was_training = model.training
    model.eval()
    try:
        speech = torch.as_tensor(utt.speech, dtype=torch.float32)[None]
        stats = _stats_kwargs([utt.spk_stats]).get(STATS_KEY)
        context = model.speaker_stats(stats) if hasattr(model, "speaker_stats") else nullcontext()
        with context:
            encoded, _ = model.encode(speech, torch.tensor([speech.shape[1]]))
        best = model.ctc.argmax(encoded)[0].tolist()
    finally:
        model.train(was_training)
    ids, previous = [], None
    for token in best:
        if token != previous and token != 0:
            ids.append(token)
        previous = token
    return ids


def pseudo_labels(
    model: torch.nn.Module,
    utts: Sequence[Utterance],
    hypotheses: dict[str, str],
    to_ids: Callable[[str], list[int]],
    select: str,
) -> list[tuple[Utterance, list[int]]]:
    """(utterance, token ids) for the utterances whose hypothesis is kept (see the module docstring)."""
    kept = []
    for utt in utts:
        ids = to_ids(hypotheses.get(utt.key, "").strip())
        if not ids:
            continue
        if select == "agree" and ctc_greedy(model, utt) != ids:
            continue
        kept.append((utt, ids))
    return kept


def adapt(model: torch.nn.Module, examples: Sequence[tuple[Utterance, list[int]]], cfg: AdaptConfig) -> list[float]:
    """Fine-tune ``model`` in place on ``examples``; returns the mean loss of each epoch.

    Parameters not matching ``cfg.params`` are frozen for the call and unfrozen after it.
    """
    if not examples:
        return []
    pattern = re.compile(cfg.params)
    trainable = [p for name, p in model.named_parameters() if pattern.search(name)]
    if not trainable:
        raise ValueError(f"no parameter name matches params={cfg.params!r}")
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(trainable, lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)
    losses = []
    model.train()
    try:
        for _ in range(cfg.epochs):
            order = rng.permutation(len(examples))
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                batch = [examples[i] for i in order[start: start + cfg.batch_size]]
                speech, speech_lengths = _pad([torch.as_tensor(u.speech, dtype=torch.float32) for u, _ in batch], 0.0)
                text, text_lengths = _pad([torch.tensor(ids) for _, ids in batch], -1)
                loss = model(speech=speech, speech_lengths=speech_lengths, text=text, text_lengths=text_lengths,
                             **_stats_kwargs([u.spk_stats for u, _ in batch]))[0]
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
                optimizer.step()
                total += loss.item() * len(batch)
            losses.append(total / len(examples))
    finally:
        model.eval()
        for p, flag in flags.items():
            p.requires_grad_(flag)
        torch.random.set_rng_state(generator_state)
    return losses


@dataclass(frozen=True)
class RoundReport:
    """One adaptation round: pseudo-labels kept and the mean loss of each epoch."""

    pseudo_labels: int
    losses: list[float]


def adapt_and_decode(
    model: torch.nn.Module,
    original: dict[str, torch.Tensor],
    utts: Sequence[Utterance],
    hypotheses: dict[str, str],
    to_ids: Callable[[str], list[int]],
    decode: Callable[[Utterance], str],
    cfg: AdaptConfig,
) -> tuple[dict[str, str], list[RoundReport]]:
    """``cfg.rounds`` rounds of (select labels, restore ``original``, adapt, decode every utterance).

    ``hypotheses`` are the first pass's; returns the last round's hypotheses (key -> text) and
    one report per round. ``model`` holds ``original`` (its state_dict) again on return.
    """
    reports = []
    try:
        for _ in range(cfg.rounds):
            examples = pseudo_labels(model, utts, hypotheses, to_ids, cfg.select)
            model.load_state_dict(original)
            losses = adapt(model, examples, cfg)
            hypotheses = {u.key: decode(u) for u in utts}
            reports.append(RoundReport(len(examples), losses))
    finally:
        model.load_state_dict(original)
    return hypotheses, reports
