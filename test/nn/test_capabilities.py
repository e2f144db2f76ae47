"""Typed capabilities (echo_plugin.nn.capabilities): the Echo modules have them structurally, others do not."""
from __future__ import annotations

import torch
from torch import nn

from echo_plugin.asr.frontend.echo_frontend import EchoFrontend
from echo_plugin.catalog import ATTENTION, ROTARY
from echo_plugin.nn.attention.span_refiner import SpanRefiner
from echo_plugin.nn.capabilities import (
    AuxiliaryLoss,
    ExtractsFeatures,
    ObservesLoss,
    ReadsF0,
    SpeakerFeatures,
    UsesAuxStream,
    UsesWorkingMemory,
    modules_with,
    reads_f0,
    uses_aux_stream,
    uses_memory,
)


def test_method_capabilities_of_the_echo_classes() -> None:
    assert issubclass(EchoFrontend, ExtractsFeatures) and issubclass(EchoFrontend, SpeakerFeatures)
    assert issubclass(SpanRefiner, ObservesLoss)
    myelinated = ATTENTION.build({"type": "myelinated", "conf": {"memory_slots": 2}}, d_model=8, n_heads=2)
    assert isinstance(myelinated, AuxiliaryLoss)
    for protocol in (ExtractsFeatures, SpeakerFeatures, ObservesLoss, AuxiliaryLoss):
        assert not isinstance(nn.Linear(2, 2), protocol)


def test_flag_capabilities_are_read_where_declared() -> None:
    plain = ROTARY.build("standard", head_dim=8)
    pitch = ROTARY.build("pitch_aware", head_dim=8)
    assert isinstance(plain, ReadsF0) and not reads_f0(plain)
    assert reads_f0(pitch)
    assert not reads_f0(nn.Linear(2, 2)) and reads_f0(nn.Linear(2, 2), default=True)  # undeclared: the default
    standard = ATTENTION.build("standard", d_model=8, n_heads=2)
    with_slots = ATTENTION.build({"type": "myelinated", "conf": {"memory_slots": 2}}, d_model=8, n_heads=2)
    without = ATTENTION.build({"type": "myelinated", "conf": {"memory_slots": 0}}, d_model=8, n_heads=2)
    assert isinstance(standard, UsesWorkingMemory) and not uses_memory(standard)
    assert uses_memory(with_slots) and not uses_memory(without) and not uses_memory(nn.Linear(2, 2))
    stream = ATTENTION.build({"type": "curiosity", "conf": {"aux_source": "features"}}, d_model=8, n_heads=2)
    assert isinstance(standard, UsesAuxStream) and not uses_aux_stream(standard) and uses_aux_stream(stream)


def test_modules_with_finds_submodules_in_order_but_not_the_root() -> None:
    class Root(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = SpanRefiner()
            self.inner = nn.Sequential(nn.Linear(2, 2), SpanRefiner())

        def observe_loss(self, loss: float) -> None:
            pass

    root = Root()
    assert modules_with(root, ObservesLoss) == [root.first, root.inner[1]]
    assert modules_with(root, AuxiliaryLoss) == []
    assert torch.is_tensor(root.first.span)
