"""Q-learning span refiner: a tabular Q-learner that widens or narrows an attention span.

The design ("Q-learning based refiner: reinforcement learning for adaptive
attention span optimization"), made concrete:

* **Span**: a band half-width ``w`` in frames (keys further than ``w`` from a
  query are hidden; see :mod:`echo_plugin.nn.attention.local`).
* **State**: attention statistics of the training forward passes since the
  last decision, discretised: the mean normalised entropy of the attention rows
  (entropy / log(visible keys), in [0, 1]) in ``entropy_bins`` equal bins, and
  the mean attention mass on the band's outer ``edge_fraction`` (keys with
  ``|d| > (1 - edge_fraction) w``) in ``edge_bins`` equal bins. Much mass at the
  edge says the queries want to look further; low entropy with no edge mass says
  the band is wider than needed. The current span itself, in ``span_bins``
  log-spaced bins over ``[min_span, max_span]``, completes the state: whether
  narrowing helps depends on where the span is, and without it an action's value
  could not depend on that (an attention whose statistics do not move with the
  span, e.g. uniform weights, would leave a bandit whose best arm keeps changing).
* **Actions**: narrow (``w -> min(w / factor, w - 1)``), keep, widen
  (``w -> max(w * factor, w + 1)``), clipped to ``[min_span, max_span]``.
* **Reward**: the relative decrease of the mean training loss between two
  decisions, ``(L_prev - L_now) / |L_prev|``, minus its running average. Training
  loss falls for every action while the model learns; subtracting that trend
  (a baseline, as in advantage estimates) credits the action rather than the
  progress. Losses arrive through :meth:`SpanRefiner.observe_loss`, which
  ``model: echo`` (:class:`echo_plugin.asr.espnet_model.EchoASRModel`) calls
  after every training forward pass; one decision every ``interval`` losses
  (their mean), which averages away mini-batch noise.
* **Update**: ``Q[s, a] += alpha (r + gamma max_a' Q[s', a'] - Q[s, a])`` for the
  previous (state, action), then epsilon-greedy on ``Q[s']`` in training (ties
  go to "keep", so an untrained table does not drift). In eval mode nothing is
  recorded or updated and the span stays as trained.

All state (Q-table, span, last state/action/loss, reward baseline, running
sums) is registered float buffers: it is saved in and restored from ESPnet's
checkpoints. Float, not int: ESPnet's checkpoint averaging sums integer tensors
instead of averaging them (so an integer span would come out as the sum of the
averaged models' spans); averaged floats give the mean span.

With DDP every rank learns on its own losses, and the default buffer broadcast
makes rank 0's table and span the ones everybody uses. Under ``torch.nn.DataParallel``
(ESPnet's ``--ngpu N`` without distributed mode) the losses reach per-step replicas
whose buffer updates are discarded, so the span does not move: use DDP.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import Tensor, nn

NARROW, KEEP, WIDEN = 0, 1, 2
ACTIONS = ("narrow", "keep", "widen")
_NO_LOSS_WARN_AFTER = 200  # training forward passes without any observe_loss call


class SpanRefiner(nn.Module):
    """Holds and adjusts one attention module's span (see the module doc).

    Args:
        init: starting half-width in frames.
        min_span, max_span: limits of the half-width.
        factor: multiplicative step of narrow / widen (each moves by at least one frame).
        epsilon: exploration probability in training.
        alpha: Q-learning rate.  gamma: discount.
        interval: losses averaged per decision.
        entropy_bins, edge_bins: discretisation of the two statistics.
        span_bins: log-spaced bins of the current span in the state.
        edge_fraction: outer part of the band counted as its edge.
        baseline_momentum: running-average momentum of the reward baseline.
        stat_queries: query rows per forward pass used for the statistics.
    """

    def __init__(
        self,
        init: int = 32,
        min_span: int = 2,
        max_span: int = 512,
        factor: float = 1.25,
        epsilon: float = 0.1,
        alpha: float = 0.1,
        gamma: float = 0.5,
        interval: int = 20,
        entropy_bins: int = 3,
        edge_bins: int = 3,
        span_bins: int = 6,
        edge_fraction: float = 0.25,
        baseline_momentum: float = 0.9,
        stat_queries: int = 32,
    ) -> None:
        super().__init__()
        if not 1 <= min_span <= init <= max_span:
            raise ValueError(f"span: need 1 <= min_span <= init <= max_span, got {min_span}, {init}, {max_span}")
        if factor <= 1.0 or not 0.0 <= epsilon <= 1.0 or interval < 1 or not 0.0 < edge_fraction < 1.0:
            raise ValueError(
                f"span: need factor > 1, 0 <= epsilon <= 1, interval >= 1, 0 < edge_fraction < 1; got "
                f"{factor}, {epsilon}, {interval}, {edge_fraction}"
            )
        if min(entropy_bins, edge_bins, span_bins, stat_queries) < 1:
            raise ValueError("span: entropy_bins, edge_bins, span_bins and stat_queries must be positive")
        self.min_span, self.max_span, self.factor = min_span, max_span, factor
        self.epsilon, self.alpha, self.gamma, self.interval = epsilon, alpha, gamma, interval
        self.entropy_bins, self.edge_bins, self.span_bins = entropy_bins, edge_bins, span_bins
        self.edge_fraction = edge_fraction
        self.baseline_momentum, self.stat_queries = baseline_momentum, stat_queries
        self.register_buffer("q_table", torch.zeros(entropy_bins * edge_bins * span_bins, len(ACTIONS)))
        self.register_buffer("span", torch.tensor(float(init)))
        self.register_buffer("last_state", torch.tensor(-1.0))
        self.register_buffer("last_action", torch.tensor(-1.0))
        self.register_buffer("last_loss", torch.tensor(float("nan")))
        self.register_buffer("reward_baseline", torch.tensor(0.0))
        self.register_buffer("loss_sum", torch.tensor(0.0))
        self.register_buffer("loss_count", torch.tensor(0.0))
        self.register_buffer("stat_sum", torch.zeros(2))  # entropy, edge mass
        self.register_buffer("stat_count", torch.tensor(0.0))
        self.register_buffer("decisions", torch.tensor(0.0))
        self._unobserved_forwards = 0
        self._half_width = self._rounded()  # host copy: forward passes read it without a device sync

    @property
    def half_width(self) -> int:
        """The current span in frames (rounded)."""
        return self._half_width

    def _rounded(self) -> int:
        return max(1, int(round(float(self.span))))

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._half_width = self._rounded()

    def record(self, entropy: Tensor, edge: Tensor, rows: Tensor) -> None:
        """Add one forward pass's statistics: sums over ``rows`` attention rows (0-dim tensors, no sync)."""
        if not self.training:
            return
        self.stat_sum += torch.stack([entropy, edge]).detach().to(self.stat_sum)
        self.stat_count += rows.detach().to(self.stat_count)
        self._unobserved_forwards += 1
        never_fed = float(self.loss_count) == 0 and float(self.decisions) == 0
        if self._unobserved_forwards == _NO_LOSS_WARN_AFTER and never_fed:
            logging.warning(
                "adaptive attention: the Q-learning span refiner has seen %d training passes but no loss; "
                "it learns only under model: echo (EchoASRModel calls observe_loss)",
                _NO_LOSS_WARN_AFTER,
            )

    def state(self) -> int:
        """Discretised state from the statistics recorded since the last decision; -1 = none recorded."""
        count = float(self.stat_count)
        if count <= 0:
            return -1
        entropy, edge = (self.stat_sum / count).tolist()
        e_bin = min(int(max(entropy, 0.0) * self.entropy_bins), self.entropy_bins - 1)
        m_bin = min(int(max(edge, 0.0) * self.edge_bins), self.edge_bins - 1)
        return (e_bin * self.edge_bins + m_bin) * self.span_bins + self.span_bin()

    def span_bin(self) -> int:
        """The span's log-spaced bin over [min_span, max_span]."""
        if self.max_span == self.min_span:
            return 0
        position = math.log(float(self.span) / self.min_span) / math.log(self.max_span / self.min_span)
        return min(max(int(position * self.span_bins), 0), self.span_bins - 1)

    def observe_loss(self, loss: float) -> None:
        """Take one training loss; every ``interval`` losses, learn and act. No-op in eval mode."""
        if not self.training or not math.isfinite(loss):
            return
        self._unobserved_forwards = 0
        self.loss_sum += loss
        self.loss_count += 1
        if float(self.loss_count) < self.interval:
            return
        mean_loss = float(self.loss_sum / self.loss_count)
        state = self.state()
        self.loss_sum.zero_()
        self.loss_count.zero_()
        self.stat_sum.zero_()
        self.stat_count.zero_()
        if state < 0:
            return
        self._learn(state, mean_loss)
        action = self._choose(state)
        self._act(action)
        self.last_state.fill_(state)
        self.last_action.fill_(action)
        self.last_loss.fill_(mean_loss)
        self.decisions += 1

    def _learn(self, state: int, mean_loss: float) -> None:
        prev_state, prev_action, prev_loss = int(self.last_state), int(self.last_action), float(self.last_loss)
        if prev_action < 0 or not math.isfinite(prev_loss):
            return
        decrease = (prev_loss - mean_loss) / max(abs(prev_loss), 1e-8)
        reward = decrease - float(self.reward_baseline)
        self.reward_baseline.mul_(self.baseline_momentum).add_((1.0 - self.baseline_momentum) * decrease)
        target = reward + self.gamma * float(self.q_table[state].max())
        old = float(self.q_table[prev_state, prev_action])
        self.q_table[prev_state, prev_action] = old + self.alpha * (target - old)

    def _choose(self, state: int) -> int:
        """Epsilon-greedy; greedy ties go to KEEP."""
        if float(torch.rand(())) < self.epsilon:
            return int(torch.randint(len(ACTIONS), ()))
        values = self.q_table[state]
        if bool(values[KEEP] >= values.max()):
            return KEEP
        return int(values.argmax())

    def _act(self, action: int) -> None:
        span = float(self.span)
        if action == NARROW:
            span = min(span / self.factor, span - 1.0)
        elif action == WIDEN:
            span = max(span * self.factor, span + 1.0)
        self.span.fill_(min(max(span, float(self.min_span)), float(self.max_span)))
        self._half_width = self._rounded()

    def extra_repr(self) -> str:
        return f"span={float(self.span):.1f}, range=[{self.min_span}, {self.max_span}], interval={self.interval}"


@torch.no_grad()
def span_statistics(
    q: Tensor, k: Tensor, keep: Tensor | None, causal: bool, half_width: int, edge_fraction: float, rows: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Attention statistics of up to ``rows`` evenly spaced query rows inside the band (self-attention).

    Args:
        q: (B, H, T, dh) queries.  k: (B, H, S, dh) keys as attended (masking applied).
        keep: (B, S) bool, True = real key, or None.
        causal: hide later keys.  half_width: the band w.
        edge_fraction: keys with ``|d| > (1 - edge_fraction) w`` form the edge.
        rows: M, the number of query rows sampled (cost O(B H M S), no gradient).

    Returns:
        sums over the used rows of the normalised entropy and of the edge mass, and the row count
        (0-dim tensors). Rows of padded queries or with fewer than two visible keys are left out.
    """
    from echo_plugin.nn.attention.local import band_mask, key_distance

    t_len, s_len = q.shape[-2], k.shape[-2]
    picked = torch.linspace(0, t_len - 1, min(rows, t_len), device=q.device).round().long().unique()
    q_index = picked + (s_len - t_len)
    distance = key_distance(q_index, s_len)  # (M, S)
    allowed = band_mask(distance, half_width, causal)[None, None]  # (1, 1, M, S)
    if keep is not None:
        allowed = allowed & keep[:, None, None, :]
    scores = (q[:, :, picked].float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    probs = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1).nan_to_num(0.0)
    visible = allowed.sum(dim=-1).expand(probs.shape[:-1]).float()  # (B, H, M)
    entropy = -(probs * probs.clamp(min=1e-12).log()).sum(dim=-1) / visible.clamp(min=2.0).log()
    edge = (distance.abs() > (1.0 - edge_fraction) * half_width)[None, None]
    edge_mass = (probs * edge).sum(dim=-1)
    used = visible >= 2
    if keep is not None:
        used = used & keep[:, None, q_index]
    used = used.float()
    return (entropy * used).sum(), (edge_mass * used).sum(), used.sum()
