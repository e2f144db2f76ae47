"""Beam-search states of the attention decoders: cross-attention keys/values projected once, shared.

ESPnet's beam search holds one state per hypothesis and re-selects states by index between steps.
The encoder output every hypothesis attends to is the same from step to step, so its cross-attention
keys/values are projected once, at the first :meth:`CachedScorer.batch_score` call for that memory,
into one :class:`ProjectedMemory` that the hypotheses hold by reference: no step re-stacks them and
no finished hypothesis keeps a copy. A hypothesis' own state is its self-attention cache.

A hypothesis' state is the tuple ``(memory, row, self_caches)``:

- ``memory``: the :class:`ProjectedMemory` (the same object for every hypothesis of a search);
- ``row``: which of its encoder outputs the hypothesis reads (the row of ``xs`` at the first call);
- ``self_caches``: per layer, the self-attention (key, value), each (H', L, dh), keys already rotated
  (H' = H, or more heads where a variant caches extra ones).

The states are plain tuples and lists: ESPnet 202611's batch beam search copies a finished
hypothesis' state part by part with ``type(part)(iterable)`` (cloning tensors that are views of a
larger storage), which a NamedTuple does not accept; a ProjectedMemory passes through it unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from echo_plugin.espnet_legacy import BatchScorerInterface
from echo_plugin.nn.layers import DecoderInputs

KV = Tuple[Tensor, Tensor]  # keys (N, H', L, dh) and values, or one hypothesis' (H', L, dh)


@dataclass(eq=False)
class ProjectedMemory:
    """The cross-attention keys/values of U encoder outputs (S frames), projected once.

    ``caches``: per layer, per cross-attention, (keys, values), each (U, H', S, dh).
    """

    caches: List[List[KV]]

    @property
    def frames(self) -> int:
        """S, the length of the encoder output projected."""
        return self.caches[0][0][0].size(2)

    def for_rows(self, rows: Sequence[int]) -> List[List[KV]]:
        """Per layer, per cross-attention, the keys/values of hypotheses reading ``rows``: each (N, H', S, dh).

        Hypotheses that all read one row get it expanded (a view, no copy); rows 0..U-1 in order
        get the projection itself; any other choice of rows gathers them (one copy).
        """
        n, units = len(rows), self.caches[0][0][0].size(0)
        if all(r == rows[0] for r in rows):
            return self._map(lambda t: t[rows[0] : rows[0] + 1].expand(n, *t.shape[1:]))
        if list(rows) == list(range(units)):
            return self.caches
        index = torch.tensor(list(rows), device=self.caches[0][0][0].device)
        return self._map(lambda t: t.index_select(0, index))

    @classmethod
    def gather(cls, parts: Sequence[Tuple[ProjectedMemory, int]]) -> ProjectedMemory:
        """One ProjectedMemory of the rows ``(memory, row)``, in order (a copy)."""
        per_hyp = [memory.for_rows([row]) for memory, row in parts]
        return cls([[(torch.cat(ks), torch.cat(vs)) for ks, vs in (zip(*kvs) for kvs in zip(*layers))]
                    for layers in zip(*per_hyp)])  # fmt: skip

    def _map(self, fn: Callable[[Tensor], Tensor]) -> List[List[KV]]:
        return [[(fn(k), fn(v)) for k, v in layer] for layer in self.caches]


HypState = Optional[Tuple[ProjectedMemory, int, List[KV]]]


def stacked_self_caches(states: Sequence[HypState], n_layers: int) -> List[Optional[KV]]:
    """Per layer, the self-attention caches of N hypotheses stacked: each (N, H', L, dh); None before the first step."""
    if states[0] is None:
        return [None] * n_layers
    return [
        (torch.stack([s[2][layer][0] for s in states]), torch.stack([s[2][layer][1] for s in states]))
        for layer in range(n_layers)
    ]


def shared_memory(states: Sequence[HypState], xs: Tensor) -> Optional[Tuple[ProjectedMemory, List[int]]]:
    """The projected memory the N hypotheses read and their rows in it.

    None (project ``xs`` (N, S, D) anew) before the first step, or when the states' memory has
    another length S than ``xs`` (not the memory they were projected from). Hypotheses of several
    searches (different ProjectedMemory objects) get theirs gathered into one.
    """
    if states[0] is None or states[0][0].frames != xs.size(1):
        return None
    memory = states[0][0]
    if all(s[0] is memory for s in states):
        return memory, [s[1] for s in states]
    return ProjectedMemory.gather([(s[0], s[1]) for s in states]), list(range(len(states)))


def project_once(cross_caches: List[List[KV]], xs: Tensor) -> Tuple[ProjectedMemory, List[int]]:
    """The ProjectedMemory of the first step's cross-attention caches (each (N, H', S, dh), from ``xs``
    (N, S, D)) and each hypothesis' row. One row is kept where ``xs`` repeats one memory as a view
    (batch stride 0, as ESPnet's ``x.expand``)."""
    n = xs.size(0)
    if n > 1 and xs.stride(0) == 0:
        return ProjectedMemory([[(k[:1].clone(), v[:1].clone()) for k, v in layer] for layer in cross_caches]), [0] * n
    return ProjectedMemory(cross_caches), list(range(n))


def hypothesis_states(memory: ProjectedMemory, rows: Sequence[int], self_caches: Sequence[KV]) -> List[HypState]:
    """The N hypotheses' states: the shared memory, each one's row, its self-attention caches
    (from ``self_caches``: per layer, each (N, H', L, dh))."""
    return [(memory, row, [(k[b], v[b]) for k, v in self_caches]) for b, row in enumerate(rows)]


class CachedScorer(BatchScorerInterface):
    """ESPnet's scorer interface (``batch_score``, ``score``) for a decoder of KV-cached layers.

    The decoder provides:

    - ``blocks``: its layers, each called ``block(x, inputs, *caches, **options) -> (x, *caches)`` with
      x (N, L, D), ``inputs`` a :class:`~echo_plugin.nn.layers.DecoderInputs` (memory (N, S, D)) and ``CACHE_PARTS``
      caches (self-attention, then one per cross-attention), each (k, v) or None; a cross-attention
      given its cache attends to it as it is and returns it unchanged;
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
            log-probs (N, V) and the N new states (self-attention caches now covering all L tokens).
        """
        n_layers = len(self.blocks)
        self_caches = stacked_self_caches(states, n_layers)
        shared = shared_memory(states, xs)
        cross = shared[0].for_rows(shared[1]) if shared else [[None] * (self.CACHE_PARTS - 1) for _ in range(n_layers)]
        new_tokens = ys if states[0] is None else ys[:, -1:]
        positions = torch.arange(ys.size(1) - new_tokens.size(1), ys.size(1), device=ys.device)
        x = self._embed(new_tokens, positions)
        inputs = DecoderInputs(xs, positions=positions)  # nothing to mask: unpadded memory, equal-length prefixes
        new_self: List[KV] = []
        for i, block in enumerate(self.blocks):
            x, self_cache, *cross[i] = block(x, inputs, self_caches[i], *cross[i], **self._block_options())
            new_self.append(self_cache)
        logp = torch.log_softmax(self._logits(x[:, -1]), dim=-1)
        memory, rows = project_once(cross, xs) if shared is None else shared
        return logp, hypothesis_states(memory, rows, new_self)

    def score(self, ys: Tensor, state: HypState, x: Tensor) -> Tuple[Tensor, HypState]:
        """ys (L,) prefix, state, x (S, D) -> log-probs (V,) of the next token, new state."""
        logp, states = self.batch_score(ys.unsqueeze(0), [state], x.unsqueeze(0))
        return logp[0], states[0]

