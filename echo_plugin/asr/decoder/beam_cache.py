"""Key/value caches of the attention decoders, kept per hypothesis as ESPnet's beam search keeps states.

ESPnet's beam search holds one state per hypothesis and re-selects states by index between steps.
A decoder's state for one hypothesis is a list with one entry per layer; a layer's entry is a tuple
of (key, value) pairs, the self-attention's first, then one per cross-attention, each tensor
(H, *, dh) without the batch axis (keys already rotated). The states are plain lists and tuples of
tensors: ESPnet 202611's batch beam search copies a finished hypothesis' state with
``type(part)(iterable)``, which a NamedTuple does not accept.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from echo_plugin.espnet_legacy import BatchScorerInterface

KV = Tuple[Tensor, Tensor]  # keys (N, H, L, dh) and values, or one hypothesis' (H, L, dh)
LayerState = Tuple[KV, ...]  # (self-attention, cross-attention 1, ...) of one layer, one hypothesis
HypState = Optional[List[LayerState]]


def batch_caches(states: Sequence[HypState], xs: Tensor, n_layers: int, n_parts: int) -> List[List[Optional[KV]]]:
    """Per layer, the ``n_parts`` caches (self, cross...) of N hypotheses batched: each (N, H, *, dh).

    Nothing before the first step (all None). The cross-attention caches are kept only while the
    memory ``xs`` (N, S, D) is the one they were projected from (same length S); else recomputed.
    """
    caches: List[List[Optional[KV]]] = [[None] * n_parts for _ in range(n_layers)]
    if states[0] is None:
        return caches
    for layer in range(n_layers):
        parts = range(n_parts) if states[0][layer][1][0].size(1) == xs.size(1) else range(1)
        for part in parts:
            caches[layer][part] = (torch.stack([s[layer][part][0] for s in states]),
                                   torch.stack([s[layer][part][1] for s in states]))
    return caches


def hypothesis_states(caches: Sequence[Sequence[KV]], n: int) -> List[List[LayerState]]:
    """The N hypotheses' states from per-layer batched caches (each (N, H, *, dh))."""
    return [[tuple((k[b], v[b]) for k, v in layer) for layer in caches] for b in range(n)]


class CachedScorer(BatchScorerInterface):
    """ESPnet's scorer interface (``batch_score``, ``score``) for a decoder of KV-cached layers.

    The decoder provides:

    - ``blocks``: its layers, each called ``block(x, memory, memory_mask, target_mask, positions,
      *caches, **options) -> (x, *caches)`` with x (N, L, D), memory (N, S, D) and ``CACHE_PARTS``
      caches (self-attention, then one per cross-attention), each (k, v) or None;
    - ``CACHE_PARTS``;  ``_embed(tokens (N, L), positions (L,)) -> (N, L, D)``;
      ``_logits(x (..., D)) -> (..., V)``;  ``_block_options() -> options`` (default none).
    """

    CACHE_PARTS: int
    blocks: nn.ModuleList

    def _embed(self, tokens: Tensor, positions: Tensor) -> Tensor:
        raise NotImplementedError

    def _logits(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _block_options(self) -> Dict[str, Any]:
        """Keyword arguments every block call gets (e.g. the dual decoder's gate override)."""
        return {}

    def batch_score(self, ys: Tensor, states: List[HypState], xs: Tensor) -> Tuple[Tensor, List[HypState]]:
        """Next-token log-probs for N prefixes of equal length.

        Args:
            ys: (N, L) prefixes.  states: N per-hypothesis states (None before the first step).
            xs: (N, S, D) encoder output per hypothesis.

        Returns:
            log-probs (N, V) and the N new states (caches now covering all L tokens).
        """
        caches = batch_caches(states, xs, len(self.blocks), self.CACHE_PARTS)
        new_tokens = ys if states[0] is None else ys[:, -1:]
        positions = torch.arange(ys.size(1) - new_tokens.size(1), ys.size(1), device=ys.device)
        x = self._embed(new_tokens, positions)
        for i, block in enumerate(self.blocks):
            x, *caches[i] = block(x, xs, None, None, positions, *caches[i], **self._block_options())
        logp = torch.log_softmax(self._logits(x[:, -1]), dim=-1)
        return logp, hypothesis_states(caches, ys.size(0))

    def score(self, ys: Tensor, state: HypState, x: Tensor) -> Tuple[Tensor, HypState]:
        """ys (L,) prefix, state, x (S, D) -> log-probs (V,) of the next token, new state."""
        logp, states = self.batch_score(ys.unsqueeze(0), [state], x.unsqueeze(0))
        return logp[0], states[0]
