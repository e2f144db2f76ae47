"""Typed capabilities: what model code asks of an Echo module, as ``typing.Protocol`` classes.

A module has a capability by having the member (no base class to inherit); the
protocols are ``runtime_checkable`` so that the asking code tests it with
``isinstance`` instead of probing with ``getattr``. A protocol whose member is a
flag (``needs_f0``, ``uses_memory``, ``uses_aux_stream``) says only that the module
declares the flag; the helper beside it reads the value.

==================  ======================================================  ====================================
protocol            member                                                  has it / asks for it
==================  ======================================================  ====================================
ReadsF0             ``needs_f0: bool``                                      rotaries, EchoEncoder /
                                                                            EchoASRModel, batch encode, export
UsesWorkingMemory   ``uses_memory: bool``                                   attention modules / EncoderLayer
UsesAuxStream       ``uses_aux_stream: bool``                               attention modules / EncoderLayer
ObservesLoss        ``observe_loss(loss: float)``                           SpanRefiner / EchoASRModel.forward
AuxiliaryLoss       ``take_auxiliary_losses() -> {name: scalar}``           MyelinatedAttention /
                                                                            EchoASRModel.forward
ExtractsFeatures    ``extract(speech, lengths, with_f0, cached,             EchoFrontend / EchoASRModel, export
                    input_norm) -> FrontendOutput`` (feats, lengths, f0)
SpeakerFeatures     ``speaker_features(speech, lengths) -> (feats, lens)``  EchoFrontend / speaker statistics
==================  ======================================================  ====================================

:func:`modules_with` finds the submodules with a method capability, deciding
once per class (an ``isinstance`` against a runtime protocol costs microseconds,
and the model asks on every training step).
"""
from __future__ import annotations

from functools import cache
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Tuple, TypeVar, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class ReadsF0(Protocol):
    """Declares whether it reads pitch: ``needs_f0`` True means its forward must get f0."""

    @property
    def needs_f0(self) -> bool: ...


@runtime_checkable
class UsesWorkingMemory(Protocol):
    """An attention module that reads and rewrites the encoder pass's WorkingMemory when ``uses_memory``."""

    @property
    def uses_memory(self) -> bool: ...


@runtime_checkable
class UsesAuxStream(Protocol):
    """An attention module that reads the layer's auxiliary stream (``aux_stream``) when ``uses_aux_stream``."""

    @property
    def uses_aux_stream(self) -> bool: ...


@runtime_checkable
class ObservesLoss(Protocol):
    """Takes the training loss after every training forward pass (in eval mode it must ignore it)."""

    def observe_loss(self, loss: float) -> None: ...


@runtime_checkable
class AuxiliaryLoss(Protocol):
    """Contributes training losses beside the task loss.

    ``take_auxiliary_losses`` returns the losses (scalars with their graph, weights
    applied) accumulated by the forward passes since the last call, by name, and
    forgets them; ``{}`` when there are none. The model adds them to its loss and
    reports each as ``loss_<name>`` in its stats.
    """

    def take_auxiliary_losses(self) -> Dict[str, Tensor]: ...


@runtime_checkable
class ExtractsFeatures(Protocol):
    """A frontend whose ``extract`` returns features with their lengths and, when asked, f0 on the same frames."""

    def extract(
        self,
        speech: Tensor,
        speech_lengths: Optional[Tensor] = None,
        with_f0: bool = False,
        cached: Optional[Mapping[str, Tuple[Tensor, Tensor]]] = None,
        input_norm: Optional[Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]] = None,
    ) -> Any: ...


@runtime_checkable
class SpeakerFeatures(Protocol):
    """A frontend that names the features a speaker normalization applies to (its raw frame features)."""

    def speaker_features(self, speech: Tensor, speech_lengths: Tensor) -> Tuple[Tensor, Tensor]: ...


@runtime_checkable
class HasFrameGrid(Protocol):
    """A frontend that says where its output frames lie in the input audio (for f0 on the same frames)."""

    def frame_grid(self) -> Any: ...  # echo_plugin.features.grid.FrameGrid: input rate, hop, window


def reads_f0(module: Any, default: bool = False) -> bool:
    """``module.needs_f0`` where the module declares it (:class:`ReadsF0`), else ``default``."""
    return bool(module.needs_f0) if isinstance(module, ReadsF0) else default


def uses_memory(module: Any) -> bool:
    """Whether ``module`` wants the working memory handed to it."""
    return isinstance(module, UsesWorkingMemory) and bool(module.uses_memory)


def uses_aux_stream(module: Any) -> bool:
    """Whether ``module`` wants the layer's auxiliary stream handed to it."""
    return isinstance(module, UsesAuxStream) and bool(module.uses_aux_stream)


P = TypeVar("P")


@cache
def _class_has(cls: type, protocol: type) -> bool:
    return issubclass(cls, protocol)


def modules_with(root: nn.Module, protocol: type[P]) -> List[P]:
    """The submodules of ``root`` (not ``root`` itself) with a method capability ``protocol``, in
    ``modules()`` order; decided per class, so a method must be defined on the class."""
    return [m for m in root.modules() if m is not root and _class_has(type(m), protocol)]  # type: ignore[misc]
