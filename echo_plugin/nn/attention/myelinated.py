"""Myelinated attention: a learned policy routes each segment of frames to full
attention, a cheap local mixer, or a skip; plus working-memory slots shared across layers.

Design
------
Frames are cut into segments of ``segment`` frames by absolute position
(``floor(pos / segment)``, so a KV-cached decoder step lands in the same segment
as in a full pass). Per segment a small MLP policy reads a summary of the value
vectors and scores three paths:

* ``full``: multi-head attention for the segment's queries only. The frames that
  take it are gathered (per utterance, padded to the longest selection in the
  batch) and only their rows go through the kernel; keys and values stay the
  whole sequence (plus memory slots). Skipped rows are never computed.
* ``cheap``: a depthwise convolution over the value vectors, kernel
  ``cheap_kernel``, inside the segment only (centred; left-only when causal),
  then the shared output projection: O(T D k) instead of O(T S D).
* ``skip``: no work at all; the module returns zeros there, so the layer's
  residual carries its input through.

Policy input: the masked mean of the segment's values; with ``causal`` the value
of the segment's first frame (every frame of a segment may see it, and a decoder
finds it in its KV cache), so the decision never reads the future. Segments of
padding only are skipped.

Training: straight-through Gumbel-max routing. In training the path is
``c = argmax(logits + g)`` with Gumbel noise ``g`` (a hard Gumbel-softmax
sample); at inference ``c = argmax(logits)``. The chosen path's output is
multiplied by ``1 + y_c - stopgrad(y_c)`` with ``y = softmax((logits + g) / tau)``:
exactly 1 in value, so the forward is the hard choice, and the task loss sends
``<dL/d out_c, out_c>`` to the policy logits through ``y_c``. The straight-through
terms of the paths not taken would need their outputs, which are never computed;
they are dropped (the score-weighted estimator of hard top-1 routing, as in
switch-style mixtures). A compute-cost penalty ``cost_weight * E[cost]``, with
``E[cost] = mean over real segments of softmax(logits) . path_costs``, is an
auxiliary loss (:class:`~echo_plugin.nn.capabilities.AuxiliaryLoss`): each
training forward pass with gradients adds it to the module's pending losses, and
``take_auxiliary_losses()`` hands them over as ``{"myelinated_cost": sum}``.
``model: echo`` (:class:`~echo_plugin.asr.espnet_model.EchoASRModel`) takes them
after every forward pass, adds them to the loss it returns and reports the sum
over layers as ``loss_myelinated_cost`` in its stats, which ESPnet logs and plots
like its own losses; being part of the loss, the penalty is scaled with it by
ESPnet's trainer (``accum_grad``, AMP's loss scale). A module used on its own must
add them to its loss itself; after 100 training passes whose penalty nobody took,
the module warns once and drops the older ones (their graphs would pile up).
``last_cost`` holds E[cost] of the last pass (unweighted), ``last_rates`` the path shares.
``forced_skip_rate`` (bench/tests) replaces the policy by a content-free
pattern: segment ``s`` skips iff ``floor((s + 1) r) > floor(s r)`` (a share ``r``
of the segments, spread evenly), every other segment takes ``full``.

Working memory: ``memory_slots`` learned slots, read by the full path as extra
keys/values (no rotary, always visible) and written after the layer's attention:
slot queries attend over the module's output frames (padding hidden), and a
sigmoid gate blends that candidate with the old contents,
``m' = g * cand + (1 - g) * m``, ``g = sigmoid(W [m; cand])``. The contents travel
between layers in a :class:`~echo_plugin.nn.attention.memory.WorkingMemory`
object that :class:`~echo_plugin.asr.encoder.echo_encoder.EchoEncoder` makes per
forward pass and each ``EncoderLayer`` passes to modules with ``uses_memory``.
Each layer adds its own learned slot embedding to the carried contents before
reading (the first memory layer thus starts from its slots), so every layer's
slots are used. Without a holder (decoder, standalone) the module reads its own
slots and writes nothing. The write pools over the whole sequence, so a holder
with ``causal`` or a KV cache is refused.

Limits: ``forced_skip_rate: 0`` with ``memory_slots: 0`` is standard multi-head
attention (same parameter names as ``standard``); self-attention only.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from echo_plugin.nn.attention.kernel import masked_attend
from echo_plugin.nn.attention.standard import AttentionCall, MultiHeadAttention

PATHS: Tuple[str, ...] = ("full", "cheap", "skip")
FULL, CHEAP, SKIP = range(3)
_UNTAKEN_LIMIT = 100  # training passes whose penalty nobody took before it is dropped with a warning
COST_LOSS = "myelinated_cost"
"""Name of the compute-cost penalty in ``take_auxiliary_losses`` (``loss_myelinated_cost`` in the model's stats)."""


def select_frames(selected: Tensor) -> Tuple[Tensor, Tensor]:
    """selected (B, T) bool -> (index (B, L), valid (B, L)): each row's selected frames
    first, in order; L = the largest count in the batch, ``valid`` marks real entries."""
    count = selected.sum(dim=1)
    length = int(count.max()) if selected.numel() else 0
    order = torch.argsort((~selected).to(torch.int8), dim=1, stable=True)[:, :length]
    valid = torch.arange(length, device=selected.device)[None, :] < count[:, None]
    return order, valid


def scatter_rows(out: Tensor, index: Tensor, valid: Tensor, rows: Tensor) -> Tensor:
    """out (B, T + 1, D) with a spare last frame; rows (B, L, D) go to frames ``index``
    (B, L) where ``valid``, the rest to the spare frame. Returns a new tensor."""
    spare = out.shape[1] - 1
    target = torch.where(valid, index, torch.full_like(index, spare))
    return out.scatter(1, target[..., None].expand(-1, -1, out.shape[-1]), rows)


def forced_pattern(first: int, count: int, rate: float, device: torch.device) -> Tensor:
    """(count,) bool, True = segment ``first + i`` skips: a share ``rate`` spread evenly."""
    s = torch.arange(first, first + count, device=device, dtype=torch.float64)
    return torch.floor((s + 1) * rate) > torch.floor(s * rate)


class MyelinatedAttention(MultiHeadAttention):
    """Self-attention with per-segment full / cheap / skip routing and working memory.

    Args (beyond :class:`MultiHeadAttention`'s, which go by keyword):
        segment: frames per routing segment.
        cheap_kernel: depthwise kernel width of the cheap path.
        memory_slots: working-memory slots M (0 = none).
        policy_hidden: hidden width of the policy MLP.
        tau: Gumbel-softmax temperature of the straight-through factor.
        cost_weight: weight of the compute-cost auxiliary loss (0 = off).
        path_costs: relative cost of (full, cheap, skip) in that loss.
        full_bias: initial policy logit bias of ``full`` (training starts mostly full).
        forced_skip_rate: None = learned policy; r in [0, 1] = content-free pattern
            with a share r of segments skipped and the rest full.
    """

    kind = "myelinated"
    self_attention_only = True

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        segment: int = 8,
        cheap_kernel: int = 5,
        memory_slots: int = 4,
        policy_hidden: int = 32,
        tau: float = 1.0,
        cost_weight: float = 0.01,
        path_costs: Sequence[float] = (1.0, 0.2, 0.0),
        full_bias: float = 2.0,
        forced_skip_rate: Optional[float] = None,
        **common: Any,
    ) -> None:
        super().__init__(d_model, n_heads, **common)
        if segment < 1 or cheap_kernel < 1 or memory_slots < 0 or tau <= 0:
            raise ValueError(
                f"myelinated: need segment >= 1, cheap_kernel >= 1, memory_slots >= 0, tau > 0; got "
                f"segment={segment}, cheap_kernel={cheap_kernel}, memory_slots={memory_slots}, tau={tau}"
            )
        if forced_skip_rate is not None and not 0.0 <= forced_skip_rate <= 1.0:
            raise ValueError(f"myelinated: forced_skip_rate must be in [0, 1] or None, got {forced_skip_rate}")
        if len(path_costs) != len(PATHS):
            raise ValueError(f"myelinated: path_costs needs one cost per path {PATHS}, got {list(path_costs)}")
        self.segment = segment
        self.cheap_kernel = cheap_kernel
        self.memory_slots = memory_slots
        self.tau = tau
        self.cost_weight = cost_weight
        self.forced_skip_rate = forced_skip_rate
        self.policy = nn.Sequential(nn.Linear(d_model, policy_hidden), nn.SiLU(), nn.Linear(policy_hidden, len(PATHS)))
        with torch.no_grad():
            self.policy[-1].bias.zero_()
            self.policy[-1].bias[FULL] = full_bias
        self.register_buffer("path_costs", torch.tensor(list(path_costs), dtype=torch.float32), persistent=False)
        self.cheap_weight = nn.Parameter(torch.full((d_model, cheap_kernel), 1.0 / cheap_kernel))
        if memory_slots:
            self.slots = nn.Parameter(torch.randn(memory_slots, d_model) * d_model**-0.5)
            self.write_query = nn.Linear(d_model, d_model)
            self.write_gate = nn.Linear(2 * d_model, d_model)
        self.last_cost: Optional[Tensor] = None  # E[cost] of the last forward, detached
        self.last_rates: Optional[Tensor] = None  # (3,) shares of full / cheap / skip segments
        self._pending_cost: Optional[Tensor] = None  # cost_weight * E[cost] summed over passes not yet taken
        self._untaken = 0  # passes in _pending_cost
        self._warned_untaken = False

    @property
    def uses_memory(self) -> bool:
        """Whether an encoder should hand this module its :class:`WorkingMemory`."""
        return self.memory_slots > 0

    def take_auxiliary_losses(self) -> Dict[str, Tensor]:
        """``{"myelinated_cost": cost_weight * E[cost]}`` summed over the training passes (with gradients)
        since the last call, with its graph; ``{}`` when there were none. Forgets them."""
        pending, self._pending_cost, self._untaken = self._pending_cost, None, 0
        return {} if pending is None else {COST_LOSS: pending}

    # ------------------------------------------------------------------ routing

    def _summaries(
        self, values: Tensor, keep: Optional[Tensor], first: int, count: int, causal: bool
    ) -> Tuple[Tensor, Tensor]:
        """values (B, S, D), keep (B, S) -> policy input (B, count, D), real (B, count) bool."""
        batch, frames, width = values.shape
        if causal:
            starts = (first + torch.arange(count, device=values.device)) * self.segment
            real = torch.ones(batch, count, dtype=torch.bool, device=values.device)
            return values[:, starts], real if keep is None else keep[:, starts]
        lo, hi = first * self.segment, (first + count) * self.segment
        weight = torch.ones(batch, frames, device=values.device) if keep is None else keep.to(values.dtype)
        pad = hi - frames
        chunk = nn.functional.pad(values[:, lo:], (0, 0, 0, pad)).view(batch, count, self.segment, width)
        weight = nn.functional.pad(weight[:, lo:], (0, pad)).view(batch, count, self.segment, 1)
        total = weight.sum(dim=2)
        return (chunk * weight).sum(dim=2) / total.clamp(min=1.0), total[..., 0] > 0

    def _route(self, summary: Tensor, real: Tensor, first: int) -> Tuple[Tensor, Tensor, Tensor]:
        """Policy: summary (B, N, D), real (B, N) -> choice (B, N) long, straight-through
        factor (B, N) (1 in value), expected compute cost (scalar)."""
        logits = self.policy(summary).float()
        noise = torch.zeros_like(logits)
        if self.training and self.forced_skip_rate is None:
            uniform = torch.rand_like(logits).clamp(1e-9, 1.0 - 1e-9)
            noise = -torch.log(-torch.log(uniform))
        if self.forced_skip_rate is not None:
            skip = forced_pattern(first, logits.shape[1], self.forced_skip_rate, logits.device)
            choice = torch.where(skip, SKIP, FULL)[None].expand(logits.shape[:2])
        else:
            choice = torch.where(real, (logits + noise).argmax(dim=-1), SKIP)
        soft = ((logits + noise) / self.tau).softmax(dim=-1).gather(-1, choice[..., None])[..., 0]
        factor = 1.0 + soft - soft.detach()
        probs = logits.softmax(dim=-1)
        weight = real.float()
        cost = ((probs @ self.path_costs) * weight).sum() / weight.sum().clamp(min=1.0)
        self.last_cost = cost.detach()
        shares = nn.functional.one_hot(choice, len(PATHS)).float() * weight[..., None]
        self.last_rates = (shares.sum(dim=(0, 1)) / weight.sum().clamp(min=1.0)).detach()
        return choice, factor, cost

    # ------------------------------------------------------------------ forward

    def attention(self, call: AttentionCall) -> Tensor:
        """Route the segments, then attend for the ``full`` frames, mix for the ``cheap`` ones and
        write the working memory (``call.memory``, read and rewritten here).

        Returns:
            (B, T, D), zeros on skipped frames. When nothing needs keys (no frame takes
            ``full``, no cache, not causal) the keys are never projected, so the module's
            new cache holds k (B, H, 0, dh).
        """
        memory, keep, causal, past = call.memory, call.key_padding_mask, call.causal, call.past
        if memory is not None and self.uses_memory and (causal or call.cache is not None):
            raise ValueError("myelinated working memory is written from the whole sequence: not with causal/cache")
        query = call.query
        batch, frames, width = query.shape
        total = past + frames
        if keep is not None and keep.shape != (batch, total):
            raise ValueError(f"key_padding_mask must be (B, S) = {(batch, total)}, got {tuple(keep.shape)}")

        values = self._merge_heads(call.v)  # (B, S, D)
        first, last = past // self.segment, (total - 1) // self.segment
        summary, real = self._summaries(values, keep, first, last - first + 1, causal)
        seg_choice, seg_factor, cost = self._route(summary, real, first)
        seg_of_frame = torch.arange(past, total, device=query.device) // self.segment - first
        choice, factor = seg_choice[:, seg_of_frame], seg_factor[:, seg_of_frame]  # (B, T)

        mem = None
        if self.uses_memory:
            carried = memory.state if memory is not None and memory.state is not None else None
            mem = self.slots.expand(batch, -1, -1) if carried is None else carried + self.slots

        full, cheap = choice == FULL, choice == CHEAP
        if call.cache is not None or causal:
            _ = call.k  # projected now: a decoder step caches its keys whatever the routing
        if bool(full.all()):  # nothing routed elsewhere: no gather, no scatter
            out = (self._full_rows(call, full, mem)[0] * factor[..., None]).to(query.dtype)
        else:
            out = query.new_zeros(batch, frames + 1, width)  # a spare last frame takes padding rows
            if bool(full.any()):
                rows, index, valid = self._full_rows(call, full, mem)
                out = scatter_rows(out, index, valid, (rows * factor.gather(1, index)[..., None]).to(out.dtype))
            if bool(cheap.any()):
                rows, index = self._cheap_rows(cheap, values, keep, causal, past)
                valid = select_frames(cheap)[1]
                out = scatter_rows(out, index, valid, (rows * factor.gather(1, index)[..., None]).to(out.dtype))
            out = out[:, :frames]

        if memory is not None and mem is not None:
            memory.state = self._write(mem, out, keep)
        if self.training and self.cost_weight > 0 and torch.is_grad_enabled():
            self._add_pending(self.cost_weight * cost)
        return out

    def _add_pending(self, penalty: Tensor) -> None:
        """Add a pass's penalty to the pending ones; after ``_UNTAKEN_LIMIT`` passes that nobody took
        (not under ``model: echo``), warn once and keep only the newest (their graphs would pile up)."""
        if self._pending_cost is not None and self._untaken >= _UNTAKEN_LIMIT:
            if not self._warned_untaken:
                logging.warning(
                    "myelinated attention: the compute-cost penalty of %d training passes was never taken; it "
                    "trains only under model: echo (EchoASRModel adds it to the loss) or when the caller adds "
                    "take_auxiliary_losses() to its loss", _UNTAKEN_LIMIT)
                self._warned_untaken = True
            self._pending_cost = None
        if self._pending_cost is None:
            self._pending_cost, self._untaken = penalty, 1
        else:
            self._pending_cost, self._untaken = self._pending_cost + penalty, self._untaken + 1

    def _full_rows(self, call: AttentionCall, full: Tensor, mem: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """Attention for the frames with ``full`` (B, T) True only -> (rows (B, L, D), index, valid)."""
        k_heads, causal = call.k, call.causal
        batch, heads, total = k_heads.shape[0], self.n_heads, k_heads.shape[2]
        index, valid = select_frames(full)
        rows_count = index.shape[1]
        gather = rows_count < full.shape[1] or not bool(valid.all())  # else index is 0 .. T-1 already
        q = call.q
        if gather:
            q = q.gather(2, index[:, None, :, None].expand(-1, heads, -1, self.head_dim))
        k, keep = self.masking(k_heads, call.key_padding_mask, call.zero_keys)
        v = call.v
        # (B, 1, 1, S) unless causal: a key-only mask stays broadcast, as in the standard kernel
        visible = torch.ones(batch, 1, rows_count if causal else 1, total, dtype=torch.bool, device=q.device)
        if keep is not None:
            visible = visible & keep[:, None, None, :].to(q.device)
        if causal:
            key_pos = torch.arange(total, device=q.device)
            visible = visible & (key_pos[None, None, None, :] <= (call.past + index)[:, None, :, None])
        bias = call.bias
        if bias is not None and gather:
            bias = bias.expand(batch, heads, -1, -1).gather(
                2, index[:, None, :, None].expand(-1, heads, -1, total)
            )
        if mem is not None:
            k = torch.cat([k, self._split_heads(self.key(mem))], dim=2)
            v = torch.cat([v, self._split_heads(self.value(mem))], dim=2)
            slots = visible.new_ones(*visible.shape[:3], mem.shape[1])
            visible = torch.cat([visible, slots], dim=-1)
            if bias is not None:
                bias = nn.functional.pad(bias, (0, mem.shape[1]))
        attended = masked_attend(q, k, v, visible, bias, call.dropout)
        return self.out(self._merge_heads(attended)), index, valid

    def _cheap_rows(
        self, cheap: Tensor, values: Tensor, keep: Optional[Tensor], causal: bool, past: int
    ) -> Tuple[Tensor, Tensor]:
        """Depthwise conv of the values inside each segment, for ``cheap`` (B, T) frames -> (rows (B, L, D), index)."""
        index, _ = select_frames(cheap)
        batch, total, width = values.shape
        kernel = self.cheap_kernel
        left = kernel - 1 if causal else kernel // 2
        pos = past + index  # (B, L) absolute frame
        taps = pos[..., None] + torch.arange(kernel, device=values.device) - left  # (B, L, k)
        same_segment = taps.div(self.segment, rounding_mode="floor") == (pos // self.segment)[..., None]
        ok = (taps >= 0) & (taps < total) & same_segment
        taps = taps.clamp(0, total - 1)
        if keep is not None:
            ok = ok & keep.gather(1, taps.flatten(1)).view_as(taps)
        gathered = values.gather(1, taps.flatten(1)[..., None].expand(-1, -1, width)).view(*taps.shape, width)
        mixed = torch.einsum("blkd,dk->bld", gathered * ok[..., None].to(values.dtype), self.cheap_weight)
        return self.out(mixed), index

    def _write(self, mem: Tensor, out: Tensor, keep: Optional[Tensor]) -> Tensor:
        """Gated write: slots mem (B, M, D) read the output frames out (B, T, D) -> new mem (B, M, D)."""
        visible = torch.ones(out.shape[0], 1, 1, out.shape[1], dtype=torch.bool, device=out.device)
        if keep is not None:
            visible = visible & keep[:, None, None, :]
        cand = masked_attend(self.write_query(mem)[:, None], out[:, None], out[:, None], visible)[:, 0]
        gate = torch.sigmoid(self.write_gate(torch.cat([mem, cand], dim=-1)))
        return gate * cand + (1.0 - gate) * mem

