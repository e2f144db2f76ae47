"""Cross-attention maps of a decoder on a teacher-forced pass, for analysis and plots.

``decoder_maps(decoder, hs, hlens, ys_in, ys_in_lens)`` returns one ``LayerMaps`` per
decoder layer. The first extractor that accepts the decoder is used:

- a dual decoder (``forward_extras``): its primary/secondary maps and gate;
- an Echo decoder (``blocks[i].cross_attn`` with query/key projections): the
  weights are recomputed from the queries and the keys each cross-attention
  really used (captured by a forward hook, so normal decoding pays nothing);
- an ESPnet TransformerDecoder family decoder (``decoders[i].src_attn.attn``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor, nn


@dataclass
class LayerMaps:
    """One layer, batch item 0: weights (H, L, T); a dual layer also secondary (H, L, T) and gate (L,)."""

    primary: Tensor
    secondary: Optional[Tensor] = None
    gate: Optional[Tensor] = None


Extractor = Callable[[nn.Module, Tensor, Tensor, Tensor, Tensor], List[LayerMaps]]


def explicit_weights(attn: nn.Module, query: Tensor, keys: Tensor, key_padding_mask: Optional[Tensor],
                     q_positions: Optional[Tensor] = None) -> Tensor:
    """Attention weights (B, H, L, S) of an Echo attention module (``standard`` layout).

    Args:
        attn: module with ``query`` Linear, ``n_heads``, ``rotary`` and ``masking``.
        query: (B, L, D) the module's query input.  keys: (B, H, S, dh) the keys it attended (rotated).
        key_padding_mask: (B, S) True = real key, or None.  q_positions: (L,) default 0..L-1.
    """
    if q_positions is None:
        q_positions = torch.arange(query.shape[1], device=query.device)
    q = attn.query(query).unflatten(-1, (attn.n_heads, -1)).transpose(1, 2)
    q = attn.rotary.rotate(q, q_positions, None)
    scores = q.float() @ keys.float().transpose(-1, -2) / math.sqrt(q.shape[-1])
    scale, keep = attn.masking.key_scale(key_padding_mask, None, torch.float32)
    if scale is not None:
        scores = scores * scale[:, None, None, :].to(scores.device)
    if keep is not None:
        scores = scores.masked_fill(~keep[:, None, None, :].to(scores.device), float("-inf"))
    return scores.softmax(dim=-1).nan_to_num(0.0)


def _dual_maps(decoder: nn.Module, hs: Tensor, hlens: Tensor, ys: Tensor, ys_lens: Tensor) -> List[LayerMaps]:
    _, extras = decoder.forward_extras(hs, hlens, ys, ys_lens)
    return [LayerMaps(e.primary_attn[0], e.secondary_attn[0], e.gate[0, :, 0]) for e in extras]


def _echo_maps(decoder: nn.Module, hs: Tensor, hlens: Tensor, ys: Tensor, ys_lens: Tensor) -> List[LayerMaps]:
    maps: List[Optional[Tensor]] = [None] * len(decoder.blocks)

    def hook(index: int) -> Callable[..., None]:
        def record(module: nn.Module, args: Tuple[Any, ...], kwargs: dict, output: Any) -> None:
            keys = output[1][0]  # (B, H, S, dh): the keys this call attended
            maps[index] = explicit_weights(module, args[0], keys, kwargs.get("key_padding_mask"),
                                           kwargs.get("q_positions"))[0]
        return record

    handles = [block.cross_attn.register_forward_hook(hook(i), with_kwargs=True)
               for i, block in enumerate(decoder.blocks)]
    try:
        decoder(hs, hlens, ys, ys_lens)
    finally:
        for handle in handles:
            handle.remove()
    return [LayerMaps(m) for m in maps if m is not None]


def _espnet_maps(decoder: nn.Module, hs: Tensor, hlens: Tensor, ys: Tensor, ys_lens: Tensor) -> List[LayerMaps]:
    decoder(hs, hlens, ys, ys_lens)
    return [LayerMaps(layer.src_attn.attn[0].detach()) for layer in decoder.decoders]


def _is_echo(decoder: nn.Module) -> bool:
    blocks = getattr(decoder, "blocks", None)
    return blocks is not None and all(hasattr(getattr(b, "cross_attn", None), "query") for b in blocks)


def _is_espnet(decoder: nn.Module) -> bool:
    layers = getattr(decoder, "decoders", None)
    return layers is not None and all(hasattr(getattr(layer, "src_attn", None), "attn") for layer in layers)


EXTRACTORS: List[Tuple[Callable[[nn.Module], bool], Extractor]] = [
    (lambda d: hasattr(d, "forward_extras"), _dual_maps),
    (_is_echo, _echo_maps),
    (_is_espnet, _espnet_maps),
]


@torch.no_grad()
def decoder_maps(decoder: nn.Module, hs: Tensor, hlens: Tensor, ys_in: Tensor, ys_in_lens: Tensor) -> List[LayerMaps]:
    """Per-layer cross-attention maps of a teacher-forced pass (batch item 0).

    Args:
        hs: (1, T, D) encoder output.  hlens: (1,).  ys_in: (1, L) <sos> + tokens.  ys_in_lens: (1,).
    """
    for accepts, extract in EXTRACTORS:
        if accepts(decoder):
            return extract(decoder, hs, hlens, ys_in, ys_in_lens)
    raise TypeError(f"no cross-attention maps for a {type(decoder).__name__} decoder "
                    "(expected forward_extras, Echo blocks or ESPnet src_attn layers)")
