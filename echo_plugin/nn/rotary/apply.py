"""The one rotary apply step shared by every rotary variant."""
from __future__ import annotations

import torch
from torch import Tensor


def apply_rotary(x: Tensor, freqs: Tensor) -> Tensor:
    """Multiply channel pairs of ``x`` by complex ``freqs``.

    Channels ``(2i, 2i+1)`` for ``i < F`` are read as the complex number
    ``x[2i] + 1j * x[2i+1]`` and multiplied by ``freqs[..., i]``: a unit-modulus
    factor rotates the pair, a factor of modulus ``r`` also scales it by ``r``.
    Channels from ``2F`` on pass through unchanged.

    Args:
        x: (..., T, D) real tensor, ``D >= 2F``.
        freqs: (..., T, F) complex tensor, broadcastable against x's pairs.

    Returns:
        (..., T, D) tensor of x's dtype (computed in float32).
    """
    n_pairs = freqs.shape[-1]
    if n_pairs == 0:
        return x
    if 2 * n_pairs > x.shape[-1]:
        raise ValueError(f"freqs has {n_pairs} pairs but x has only {x.shape[-1]} channels")
    rotated = x[..., : 2 * n_pairs].float().reshape(*x.shape[:-1], n_pairs, 2).contiguous()
    product = torch.view_as_complex(rotated) * freqs.to(torch.complex64)
    out = torch.view_as_real(product).flatten(-2).to(x.dtype)
    return torch.cat([out, x[..., 2 * n_pairs :]], dim=-1)
