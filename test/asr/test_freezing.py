"""Freezing strategies (model: echo_freeze): which parameters get gradients, and the two-stage switch."""
from typing import Dict, Set

import pytest
import torch

from echo_plugin.asr.freezing_model import FreezingASRModel
from test.asr.dual_build import batch, build

SECONDARY = ("secondary_attn.", "gate.")


def train_step(model) -> Set[str]:
    """One training forward/backward; the names of parameters with a non-None, non-zero gradient.

    Key biases are left out: they add the same amount to every score of a row, so softmax
    makes their true gradient zero (float round-off gives them tiny values either way).
    """
    model.train()
    model.zero_grad(set_to_none=True)
    speech, lengths, text, text_lengths = batch()
    loss, _, _ = model(speech=speech, speech_lengths=lengths, text=text, text_lengths=text_lengths)
    loss.backward()
    return {
        n
        for n, p in model.named_parameters()
        if p.grad is not None and p.grad.abs().sum() > 0 and not n.endswith(".key.bias")
    }


def with_grad(model) -> Set[str]:
    return {n for n, p in model.named_parameters() if p.grad is not None}


def is_secondary(name: str) -> bool:
    return name.startswith("decoder.") and any(f".{part}" in name for part in SECONDARY)


@pytest.fixture(scope="module")
def names(tmp_path_factory) -> Dict[str, Set[str]]:
    """Parameter-name groups of the tiny dual model."""
    _, _, model = build(tmp_path_factory.mktemp("names"))
    every = {n for n, _ in model.named_parameters()}
    return {
        "all": every,
        "key_bias": {n for n in every if n.endswith(".key.bias")},
        "encoder": {n for n in every if n.startswith("encoder.")},
        "secondary": {n for n in every if is_secondary(n)},
    }


def build_with(tmp_path, freeze: str):
    _, _, model = build(tmp_path, model_conf=[f"freeze={freeze}"])
    assert isinstance(model, FreezingASRModel)
    return model


def test_none_trains_everything(tmp_path, names):
    model = build_with(tmp_path, "none")
    nonzero = train_step(model)
    assert with_grad(model) == names["all"]
    assert nonzero == names["all"] - names["key_bias"]


def test_encoder_freezes_exactly_the_encoder(tmp_path, names):
    model = build_with(tmp_path, "encoder")
    nonzero = train_step(model)
    assert with_grad(model) == names["all"] - names["encoder"]
    assert nonzero == names["all"] - names["encoder"] - names["key_bias"]
    assert any(n.startswith("ctc.") for n in nonzero) and "decoder.blocks.0.cross_attn.query.weight" in nonzero


def test_encoder_and_primary_trains_only_secondary_attention_and_gates(tmp_path, names):
    model = build_with(tmp_path, "encoder_and_primary")
    nonzero = train_step(model)
    assert names["secondary"] and with_grad(model) == names["secondary"]
    assert nonzero == names["secondary"] - names["key_bias"]
    assert {n.split(".")[3] for n in nonzero} == {"secondary_attn", "gate"}


def test_two_stage_switches_at_the_configured_step(tmp_path, names):
    model = build_with(tmp_path, "{type: two_stage, conf: {switch_step: 2}}")
    for step in range(2):
        train_step(model)
        assert with_grad(model) == names["secondary"], step
    model.eval()
    with torch.no_grad():  # validation passes do not count as steps
        model(*batch())
    assert int(model.freeze_step) == 2
    train_step(model)
    assert with_grad(model) == names["all"] and int(model.freeze_step) == 3


def test_step_counter_is_saved_so_a_resumed_run_stays_in_its_stage(tmp_path, names):
    model = build_with(tmp_path, "{type: two_stage, conf: {switch_step: 1}}")
    train_step(model)
    resumed = build_with(tmp_path, "{type: two_stage, conf: {switch_step: 1}}")
    resumed.load_state_dict(model.state_dict())
    train_step(resumed)
    assert with_grad(resumed) == names["all"]


def test_parameters_frozen_by_espnet_stay_frozen_after_the_switch(tmp_path, names):
    model = build_with(tmp_path, "{type: two_stage, conf: {switch_step: 1, first: encoder}}")
    model.get_parameter("ctc.ctc_lo.weight").requires_grad_(False)  # as --freeze_param ctc.ctc_lo.weight does
    train_step(model)
    assert with_grad(model) == names["all"] - names["encoder"] - {"ctc.ctc_lo.weight"}
    train_step(model)
    assert with_grad(model) == names["all"] - {"ctc.ctc_lo.weight"}


def test_encoder_and_primary_needs_the_dual_decoder(tmp_path):
    with pytest.raises(ValueError, match="needs decoder: dual.*EchoDecoder"):
        build(tmp_path, decoder="echo", decoder_conf="{num_blocks: 1}", model_conf=["freeze=encoder_and_primary"])


def test_two_stage_is_refused_under_ddp(tmp_path, monkeypatch):
    import echo_plugin.asr.freezing_model as freezing_model

    monkeypatch.setattr(freezing_model, "_world_size", lambda: 2)
    with pytest.raises(NotImplementedError, match="DDP"):
        build_with(tmp_path, "{type: two_stage, conf: {switch_step: 1}}")
    assert isinstance(build_with(tmp_path, "encoder"), FreezingASRModel)  # fixed strategies are fine
