"""Same-seed parity with the attention code before its refactor onto one MultiHeadAttention base.

The reference values (test/fixtures/attention_parity.json) were recorded by
test/fixtures/make_attention_parity.py from the code before the refactor: for
the FSDD default config and each attention-variant config, the initial
state-dict names, shapes and checksums, and the losses of 3 Adam steps on a fixed
batch plus an eval-mode loss. The models are rebuilt from the configs stored in
the fixture, so later edits of the config files do not move this test.
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
import torch

from test.fixtures.make_attention_parity import FIXTURE, build_model, checksums, measure

REFERENCE = json.loads(FIXTURE.read_text())


pytestmark = pytest.mark.usefixtures("one_thread")  # test/asr/conftest.py


def same_sum(got: float, expected: float) -> bool:
    """Equal float64 checksums up to summation order; NaN (an unset statistic buffer) equals NaN."""
    if math.isnan(expected):
        return math.isnan(got)
    return math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9)


def assert_losses_close(got: dict, expected: dict, where: str) -> None:
    assert got.keys() == expected.keys(), where
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-5), f"{where} {key}: {got[key]} vs {value}"


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_same_parameters_and_losses_as_before_the_refactor(name: str) -> None:
    reference = REFERENCE[name]
    got = measure(reference["config"])
    assert list(got["params"]) == list(reference["params"]), "state-dict names or their order changed"
    for key, (shape, total, squares) in reference["params"].items():
        got_shape, got_total, got_squares = got["params"][key]
        assert got_shape == shape, key
        assert same_sum(got_total, total) and same_sum(got_squares, squares), key
    for step, (got_step, ref_step) in enumerate(zip(got["train"], reference["train"], strict=True)):
        assert_losses_close(got_step, ref_step, f"train forward {step}")
    assert_losses_close(got["eval"], reference["eval"], "eval")


def test_fixture_covers_every_attention_variant() -> None:
    attention_types = set()
    for record in REFERENCE.values():
        encoder, decoder = record["config"]["encoder_conf"], record["config"].get("decoder_conf", {})
        for layer in encoder.get("layers", []) + decoder.get("layers", []):
            for key in ("attention", "self_attention", "cross_attention"):
                spec = layer.get(key)
                if spec is not None:
                    attention_types.add(spec if isinstance(spec, str) else spec["type"])
    assert {"standard", "adaptive", "curiosity", "integrated", "myelinated"} <= attention_types


def test_checksums_see_a_changed_weight() -> None:
    """The checksum tells weights apart (a guard against a vacuous comparison)."""
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(REFERENCE["train_asr_echo.yaml"]["config"], Path(tmp))
    before = checksums(model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1.0
    assert checksums(model) != before
