"""Auxiliary losses in ``model: echo``: myelinated attention's cost penalty is part of the loss the model returns
and of its stats (``loss_myelinated_cost``), with the same gradient as when it joined the backward pass through
a hook on the attention output (reference: test/fixtures/myelinated_gradients.pt, recorded from that code)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from espnet2.asr.espnet_model import ESPnetASRModel

from echo_plugin.nn.attention.myelinated import MyelinatedAttention
from test.fixtures.make_myelinated_gradients import FIXTURE, build_model, fixed_batch, measure

REFERENCE = torch.load(FIXTURE, weights_only=True)


pytestmark = pytest.mark.usefixtures("one_thread")  # test/asr/conftest.py


def canonical(name: str) -> str:
    """ESPnet 202611's conv2d subsampling holds its output Linear directly (``embed.out``), 202511's in a
    Sequential (``embed.out.0``): the same parameter."""
    return name.replace("encoder.embed.out.0.", "encoder.embed.out.")


def test_same_seed_gradients_equal_those_of_the_backward_hook(tmp_path: Path) -> None:
    model = build_model(tmp_path)
    got = measure(model)
    assert got["task_loss"] == pytest.approx(REFERENCE["task_loss"], rel=1e-6)
    grads = {canonical(name): grad for name, grad in got["grads"].items()}
    reference = {canonical(name): grad for name, grad in REFERENCE["grads"].items()}
    assert grads.keys() == reference.keys()
    for name, grad in reference.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    policies = [n for n in REFERENCE["grads"] if ".policy." in n]
    assert len(policies) == 3 * 4  # two encoder layers and the decoder's self-attention, 2 linears each

    # the penalty is in the stats and in the loss returned, the stats' loss is ESPnet's (the task loss)
    stats = got["stats"]
    modules = [m for m in model.modules() if isinstance(m, MyelinatedAttention)]
    penalty = sum(m.cost_weight * m.last_cost for m in modules)
    torch.testing.assert_close(stats["loss_myelinated_cost"], penalty.reshape(1))
    torch.testing.assert_close(got["loss"], stats["loss"] + stats["loss_myelinated_cost"])
    assert all(m.take_auxiliary_losses() == {} for m in modules)  # taken by the forward


def test_without_the_penalty_the_policy_gradients_differ(tmp_path: Path) -> None:
    """The control: ESPnet's forward alone (the task loss) gives other policy gradients, so the comparison
    above sees the penalty."""
    model = build_model(tmp_path).train()
    torch.manual_seed(1)
    loss, stats, _ = ESPnetASRModel.forward(model, **fixed_batch())
    assert "loss_myelinated_cost" not in stats
    loss.backward()
    name = "encoder.blocks.0.self_attn.policy.2.bias"
    assert not torch.allclose(dict(model.named_parameters())[name].grad, REFERENCE["grads"][name])


def test_eval_has_no_auxiliary_loss(tmp_path: Path) -> None:
    model = build_model(tmp_path).eval()
    with torch.no_grad():
        loss, stats, _ = model(**fixed_batch())
    assert "loss_myelinated_cost" not in stats
    torch.testing.assert_close(loss, stats["loss"])
