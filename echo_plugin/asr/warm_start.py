"""Strict warm start: copy renamed checkpoint tensors into a module, failing on any mismatch.

A converter (Whisper, ESPnet) turns a checkpoint into ``{model key: tensor}`` plus the
checkpoint names it could not place; :func:`load_strict` then checks that every model
key is either provided or declared fresh (new parameters such as the secondary
cross-attention), that nothing is left over, and that shapes agree, and names every
offender in one error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple, Type

import torch
from torch import Tensor, nn


class WarmStartError(ValueError):
    """A checkpoint does not fit the model (missing / unexpected keys, shapes, dimensions)."""


@dataclass
class Converted:
    """Checkpoint tensors under model names, and checkpoint names with no place in the model."""

    state: Dict[str, Tensor] = field(default_factory=dict)
    unexpected: List[str] = field(default_factory=list)


def fail_on_mismatches(
    what: str, groups: Sequence[Tuple[str, Sequence[str]]], error: Type[WarmStartError] = WarmStartError
) -> None:
    """Raise ``error("<what>: <label> (<count>): <names>; ...")`` over the groups of offending names
    that are not empty; return when all are empty."""
    problems = [f"{label} ({len(names)}): {', '.join(names)}" for label, names in groups if names]
    if problems:
        raise error(f"{what}: " + "; ".join(problems))


def read_checkpoint(path: str | Path) -> Mapping[str, Any]:
    """``torch.load`` on CPU with a clear error for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise WarmStartError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001  (any unpickling failure is a bad file)
        raise WarmStartError(f"checkpoint {path} could not be read: {error}") from error


def load_strict(module: nn.Module, converted: Converted, fresh: Callable[[str], bool], source: str) -> List[str]:
    """Copy ``converted.state`` into ``module``; return the model keys left fresh.

    Args:
        module: the model part to fill.
        converted: tensors under ``module.state_dict()`` names, plus unplaceable checkpoint names.
        fresh: True for a model key the checkpoint is not expected to provide.
        source: checkpoint description for the error message.

    Raises:
        WarmStartError listing every missing key, unexpected key and shape mismatch.
    """
    target = module.state_dict()
    unexpected = sorted(set(converted.unexpected) | {k for k in converted.state if k not in target})
    missing = sorted(k for k in target if k not in converted.state and not fresh(k))
    shapes = sorted(
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
        for k, v in converted.state.items()
        if k in target and v.shape != target[k].shape
    )
    fail_on_mismatches(
        f"{source} does not fit {type(module).__name__}",
        (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)),
    )
    with torch.no_grad():
        for key, value in converted.state.items():
            target[key].copy_(value.to(target[key].dtype))
    return sorted(k for k in target if k not in converted.state)


def strip_prefix(state: Mapping[str, Tensor], prefix: str) -> Dict[str, Tensor]:
    """The entries under ``prefix`` with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def rename(
    state: Mapping[str, Tensor],
    exact: Mapping[str, str],
    modules: Mapping[str, str],
    layers: Mapping[str, str],
    layer_prefix: str,
) -> Converted:
    """Rename checkpoint keys to model keys by table.

    Args:
        state: checkpoint tensors (prefix already stripped).
        exact: full checkpoint key -> model key (e.g. a bare parameter).
        modules: checkpoint module path -> model module path (the parameter name is kept).
        layers: per-layer sub-module path -> model sub-module path, for keys
            ``<layer_prefix>.<i>.<sub>.<param>``, which become ``blocks.<i>.<sub'>.<param>``.
        layer_prefix: the checkpoint's name of the layer list.

    Returns:
        the renamed tensors and the keys no table covers.
    """
    out = Converted()
    for key, value in state.items():
        module, _, param = key.rpartition(".")
        new = exact.get(key)
        if new is None and module in modules:
            new = f"{modules[module]}.{param}"
        if new is None and module.startswith(layer_prefix + "."):
            index, _, sub = module[len(layer_prefix) + 1 :].partition(".")
            if index.isdigit() and sub in layers:
                new = f"blocks.{index}.{layers[sub]}.{param}"
        if new is None:
            out.unexpected.append(key)
        else:
            out.state[new] = value
    return out
