"""MaxFactor: factored second moments, max-normalised updates, relative step sizes.

A clean implementation of the optimizer described in the public sine2pi/Maxfactor
README (see the Echo seed notes ``06_maxfactor_notes.md``). YAML::

    optim: maxfactor
    optim_conf: {lr: 0.01, beta2_decay: -0.8, eps: [null, 0.001], d: 1.0,
                 weight_decay: 0.0, gamma: 0.99, maximize: false}

The update, per parameter ``p`` (gradient ``g``, negated when ``maximize``) at its
own step count ``t = 1, 2, ...``; ``lr`` is the group's current learning rate
(a scheduler may change it), ``eps1`` = ``eps[0]`` or the machine epsilon of
``p``'s dtype when None, ``eps2 = eps[1]``, ``RMS(x) = ||x||_2 / sqrt(numel(x))``:

1. ``w_t = t ** beta2_decay`` (Adafactor's ``1 - beta2_t``; ``w_1 = 1``).
2. ``rho_t = min(lr, 1 / sqrt(t))``; ``alpha_t = max(eps2, RMS(p)) * rho_t``,
   with ``p`` taken *before* this step's weight decay.
3. Decoupled weight decay: ``p <- p * (1 - lr * weight_decay)``.
4. Second-moment estimate ``V``:

   * ``p.dim() >= 2`` (leading dimensions are batch dimensions, the last two are
     rows x cols): row statistic ``r <- (1 - w_t) r + w_t mean_cols(g^2)``
     (shape ``[..., rows, 1]``), column statistic ``c <- (1 - w_t) c + w_t mean_rows(g^2)``
     (shape ``[..., 1, cols]``), both starting at zero;
     ``V = r c / max(max_rows(r), eps1)`` (the maximum, not Adafactor's mean, over
     the rows of each matrix). State: ``prod(...) * (rows + cols)`` numbers.
   * ``p.dim() <= 1``: ``v <- gamma v + (1 - gamma) g^2`` from zero; ``V = v``.
5. ``u = g / sqrt(max(V, eps1^2))``, then ``u <- u / max(||u||_inf, eps1)``
   (the infinity norm over the whole tensor).
6. ``denom = max(1, RMS(u) / d)`` (after step 5 ``RMS(u) <= 1``, so with the
   default ``d = 1`` the clipping is inactive; ``d < 1`` activates it).
7. ``p <- p - (alpha_t / denom) * sign(u) * max_last(|u|)``, where ``max_last(|u|)``
   is the maximum of ``|u|`` over the last dimension, broadcast back along it
   (a scalar uses ``|u|``). Every element of a row therefore moves by the same
   magnitude, in the direction of its own (preconditioned) gradient; an element
   with zero gradient does not move.

Differences from the published code, on purpose: no full-size buffer is kept for
matrices (the state is only ``r`` and ``c``), eps is a YAML-friendly pair, and
sparse gradients are refused.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch.optim import Optimizer


class MaxFactor(Optimizer):
    """MaxFactor (see the module doc for the exact update).

    Args:
        params: parameters or parameter groups.
        lr: learning rate, the cap of the relative step size ``rho_t``.
        beta2_decay: exponent of the factored statistics' EMA weight ``t ** beta2_decay`` (< 0).
        eps: ``(eps1, eps2)``: eps1 floors the second moment and the normalisers
            (None = dtype machine epsilon); eps2 floors ``RMS(p)`` in the step size.
        d: update clipping threshold on ``RMS(u)``.
        weight_decay: decoupled weight decay, multiplied by ``lr``.
        gamma: EMA factor of the full second moment of vectors and scalars.
        maximize: ascend instead of descend.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.01,
        beta2_decay: float = -0.8,
        eps: Sequence[Optional[float]] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        gamma: float = 0.99,
        maximize: bool = False,
    ) -> None:
        if not lr > 0.0:
            raise ValueError(f"MaxFactor: lr must be > 0, got {lr}")
        if not beta2_decay < 0.0:
            raise ValueError(f"MaxFactor: beta2_decay must be < 0, got {beta2_decay}")
        if len(eps) != 2 or (eps[0] is not None and not eps[0] > 0.0) or not eps[1] >= 0.0:
            raise ValueError(f"MaxFactor: eps must be (None or > 0, >= 0), got {eps}")
        if not d > 0.0:
            raise ValueError(f"MaxFactor: d must be > 0, got {d}")
        if not weight_decay >= 0.0:
            raise ValueError(f"MaxFactor: weight_decay must be >= 0, got {weight_decay}")
        if not 0.0 <= gamma < 1.0:
            raise ValueError(f"MaxFactor: gamma must be in [0, 1), got {gamma}")
        defaults = dict(
            lr=lr,
            beta2_decay=beta2_decay,
            eps=(eps[0], eps[1]),
            d=d,
            weight_decay=weight_decay,
            gamma=gamma,
            maximize=bool(maximize),
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Tensor]] = None) -> Optional[Tensor]:
        """One update of every parameter that has a gradient; returns ``closure()`` if given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            small: Dict[Tuple[torch.device, torch.dtype], List[Tensor]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("MaxFactor does not support sparse gradients")
                if p.dim() >= 2:
                    self._update_matrix(p, group)
                else:
                    small.setdefault((p.device, p.dtype), []).append(p)
            for params in small.values():
                self._update_small(params, group)
        return loss

    def _init_state(self, p: Tensor) -> dict:
        """Zero statistics: (row (..., n, 1), col (..., 1, m)) for matrices, a full ``v`` otherwise."""
        if p.dim() >= 2:
            return {
                "step": 0,
                "row": torch.zeros(p.shape[:-1] + (1,), dtype=p.dtype, device=p.device),
                "col": torch.zeros(p.shape[:-2] + (1, p.shape[-1]), dtype=p.dtype, device=p.device),
            }
        return {"step": 0, "v": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def _next_step(self, p: Tensor) -> int:
        """Create ``p``'s state on first use, count this step, return its number t."""
        state = self.state[p]
        if not state:
            state.update(self._init_state(p))
        state["step"] += 1
        return state["step"]

    def _update_matrix(self, p: Tensor, group: dict) -> None:
        """Steps 1-7 of the module doc for one tensor with dim >= 2."""
        t = self._next_step(p)
        state = self.state[p]
        lr, d = group["lr"], group["d"]
        eps1 = torch.finfo(p.dtype).eps if group["eps"][0] is None else group["eps"][0]
        grad = -p.grad if group["maximize"] else p.grad

        alpha = _rms(p).clamp(min=group["eps"][1]) * min(lr, 1.0 / math.sqrt(t))
        if group["weight_decay"]:
            p.mul_(1.0 - lr * group["weight_decay"])
        # Arranged for one full-size temporary per step (CPU allocations of that size cost more
        # than the arithmetic): g^2, then V, then u live in one buffer, and u / ||u||_inf is
        # folded into the final row-sized scale.
        row, col = state["row"], state["col"]
        weight = t ** group["beta2_decay"]
        u = torch.square(grad)
        row.lerp_(u.mean(dim=-1, keepdim=True), weight)
        col.lerp_(u.mean(dim=-2, keepdim=True), weight)
        torch.mul(row / row.amax(dim=-2, keepdim=True).clamp(min=eps1), col, out=u)  # V
        u.clamp_(min=eps1 * eps1).rsqrt_().mul_(grad)  # u = g / sqrt(max(V, eps1^2)), not yet normalised
        row_max = torch.maximum(u.amax(dim=-1, keepdim=True), -u.amin(dim=-1, keepdim=True))
        u_max = row_max.amax().clamp(min=eps1)  # max(||u||_inf, eps1)
        denom = (_rms(u) / (u_max * d)).clamp(min=1.0)  # max(1, RMS(u / u_max) / d)
        p.addcmul_(u.sign_(), row_max * (alpha / (denom * u_max)), value=-1.0)

    def _update_small(self, params: List[Tensor], group: dict) -> None:
        """Steps 1-7 for vectors and scalars of one device and dtype, on multi-tensor (foreach) kernels.

        For these the maximum of ``|u|`` over the last dimension is its maximum overall.
        """
        steps = [self._next_step(p) for p in params]
        lr, d, gamma = group["lr"], group["d"], group["gamma"]
        dtype, device = params[0].dtype, params[0].device
        eps1 = torch.finfo(dtype).eps if group["eps"][0] is None else group["eps"][0]
        grads = [p.grad for p in params]
        if group["maximize"]:
            grads = torch._foreach_neg(grads)
        root_n = torch.tensor([math.sqrt(max(p.numel(), 1)) for p in params], dtype=dtype, device=device)
        rho = torch.tensor([min(lr, 1.0 / math.sqrt(t)) for t in steps], dtype=dtype, device=device)

        alpha = (torch.stack(torch._foreach_norm(params)) / root_n).clamp(min=group["eps"][1]) * rho
        if group["weight_decay"]:
            torch._foreach_mul_(params, 1.0 - lr * group["weight_decay"])
        v = [self.state[p]["v"] for p in params]
        torch._foreach_mul_(v, gamma)
        torch._foreach_addcmul_(v, grads, grads, value=1.0 - gamma)
        u = torch._foreach_clamp_min(v, eps1 * eps1)
        torch._foreach_rsqrt_(u)
        torch._foreach_mul_(u, grads)  # u = g / sqrt(max(v, eps1^2)), not yet normalised
        row_max = torch.stack(torch._foreach_norm(u, math.inf))
        u_max = row_max.clamp(min=eps1)
        denom = (torch.stack(torch._foreach_norm(u)) / root_n / (u_max * d)).clamp(min=1.0)
        torch._foreach_sign_(u)
        torch._foreach_mul_(u, list((row_max * alpha / (denom * u_max)).unbind()))
        torch._foreach_sub_(params, u)


def _rms(x: Tensor) -> Tensor:
    """Root mean square of all elements, a 0-dim tensor."""
    return x.norm() / math.sqrt(max(x.numel(), 1))
