"""The FSDD recipe (stages 1-7) with a tiny adaptive-attention config: ESPnet's trainer feeds
the loss to the span refiners (model: echo), their state is in the epoch checkpoints, checkpoint
averaging averages it (float buffers, not summed), and beam search decodes with adaptive
self- and cross-attention in the decoder."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from test.recipe.recipe_helpers import FAST_DECODE, FIXTURES, FSDD, copy_recipe, recipe_env

CONFIG = "conf/train_asr_echo_adaptive_tiny.yaml"
TAG = "train_asr_echo_adaptive_tiny"
SPAN = {"init": 6, "min_span": 1, "max_span": 12, "interval": 2, "epsilon": 0.5}
ADAPTIVE = {
    "model": "echo",
    "encoder_conf": {"layers": [
        {"num": 1, "attention": {"type": "adaptive", "conf": {"span": SPAN, "focus": {"w_min": 1, "w_max": 8}}}},
        {"num": 1, "attention": {"type": "adaptive", "conf": {
            "span": False, "focus": False, "importance": {"fraction": 0.5, "select": "topk"}}}},
    ]},
    "decoder_conf": {"layers": [{
        "num": 1,
        "self_attention": {"type": "adaptive", "conf": {"span": SPAN, "focus": {"w_min": 1, "w_max": 4}}},
        "cross_attention": {"type": "adaptive", "conf": {"span": False, "focus": False, "importance": True}},
    }]},
}  # fmt: skip


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_recipe(tmp_path_factory.mktemp("fsdd_adaptive"))
    config = yaml.safe_load((FIXTURES / "train_asr_echo_tiny.yaml").read_text())
    config["model"] = ADAPTIVE["model"]
    config["encoder_conf"].update(ADAPTIVE["encoder_conf"])
    config["decoder_conf"].update(ADAPTIVE["decoder_conf"])
    config["batch_bins"] = 60000  # ~7 s of audio: several steps (and refiner decisions) per epoch
    (root / CONFIG).write_text(yaml.safe_dump(config))
    args = ["./run.sh", "--asr_config", CONFIG, "--inference_config", FAST_DECODE, "--stage", "1",
            "--stop_stage", "7", "--nj", "2", "--inference_nj", "2", "--test_sets", "test_isolated",
            "--local_data_opts", f"--fsdd_root {FSDD} --max_takes 1 --n_connected_train 6 "
            "--n_connected_dev 2 --n_connected_test 2"]  # fmt: skip
    result = subprocess.run(args, cwd=root, env=recipe_env(), capture_output=True, text=True)
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return root


def refiner_buffers(state: dict) -> dict[str, dict[str, torch.Tensor]]:
    """Layer prefix -> {buffer name: value} of every span refiner in a state dict."""
    found: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if ".span_refiner." in key:
            prefix, name = key.split(".span_refiner.")
            found.setdefault(prefix, {})[name] = value
    return found


def test_trainer_feeds_the_refiners_and_averaging_averages_their_span(recipe: Path) -> None:
    exp = recipe / "exp" / f"asr_{TAG}"
    epochs = [torch.load(exp / f"{e}epoch.pth", map_location="cpu", weights_only=False) for e in (1, 2)]
    refiners = [refiner_buffers(state) for state in epochs]
    assert sorted(refiners[1]) == ["decoder.blocks.0.self_attn", "encoder.blocks.0.self_attn"]
    for prefix, buffers in refiners[1].items():
        assert float(buffers["decisions"]) > float(refiners[0][prefix]["decisions"]) > 0, prefix
        assert buffers["span"].dtype == torch.float32 and 1 <= float(buffers["span"]) <= 12
    averaged = refiner_buffers(torch.load(exp / "valid.acc.ave.pth", map_location="cpu", weights_only=False))
    for prefix, buffers in averaged.items():
        mean_span = sum(float(r[prefix]["span"]) for r in refiners) / 2
        assert float(buffers["span"]) == pytest.approx(mean_span), prefix  # averaged, not summed


def test_adaptive_model_decodes_every_test_utterance(recipe: Path) -> None:
    decode = recipe / "exp" / f"asr_{TAG}" / "decode_decode_fast_valid.acc.ave" / "test_isolated"
    ref_ids = [line.split()[0] for line in (recipe / "dump/raw/test_isolated/text").read_text().splitlines()]
    assert [line.split()[0] for line in (decode / "text").read_text().splitlines()] == ref_ids
    assert json.loads((decode / "score" / "scores.json").read_text())["wer"]["n_sentences"] == len(ref_ids)
