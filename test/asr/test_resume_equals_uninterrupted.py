"""Resume equals uninterrupted: ESPnet's trainer through the project's entry point (echo_plugin.bin.asr_train), on
sixteen FSDD recordings with the tiny Echo config, trained 2 epochs in one run and 1 epoch + a resumed run to
epoch 2 at the same seed. The after-epoch-1 models are the same, the resumed run starts at epoch 2 (it does not
redo epoch 1), and the final models and checkpoints (model, Adam moments, warmup scheduler) are equal.

Why they can be equal: ESPnet's trainer reseeds python, numpy and torch with ``seed + epoch`` at the start of every
epoch (``set_all_random_seed`` in ``Trainer.run``) and its batch sampler shuffles with ``seed + epoch`` too, so the
second epoch's data order and dropout/SpecAugment draws do not depend on what the process did before; the
checkpoint restores the model, the optimizer and scheduler states, and the reporter's epoch. What is not restored
(the RNG state within an epoch) is not needed, since resuming happens at epoch boundaries only."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test.recipe.recipe_helpers import FIXTURES, FSDD

WORDS = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]
TRAIN = [f"{digit}_george_{take}" for digit in range(8) for take in (0, 1)]
VALID = [f"{digit}_jackson_0" for digit in range(4)]


def write_set(root: Path, name: str, utts: list[str], vocab: int) -> None:
    import soundfile as sf

    data = root / "data" / name
    data.mkdir(parents=True)
    lines = {"wav.scp": [], "text": [], "speech_shape": [], "text_shape.char": []}
    for utt in sorted(utts):
        wav = FSDD / "recordings" / f"{utt}.wav"
        word = WORDS[int(utt.split("_")[0])]
        lines["wav.scp"].append(f"{utt} {wav}")
        lines["text"].append(f"{utt} {word}")
        lines["speech_shape"].append(f"{utt} {sf.info(wav).frames}")
        lines["text_shape.char"].append(f"{utt} {len(word)},{vocab}")
    for file, content in lines.items():
        (data / file).write_text("\n".join(content) + "\n")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    if not (FSDD / "recordings").is_dir():
        pytest.skip(f"FSDD recordings not at {FSDD}")
    root = tmp_path_factory.mktemp("resume")
    tokens = ["<blank>", "<unk>", *sorted(set("".join(WORDS))), "<sos/eos>"]
    (root / "tokens.txt").write_text("\n".join(tokens) + "\n")
    write_set(root, "train", TRAIN, len(tokens))
    write_set(root, "valid", VALID, len(tokens))
    return root


def train(root: Path, exp: str, max_epoch: int) -> str:
    """One echo_plugin.bin.asr_train run into root/exp (resuming whatever is there); its log."""
    data = root / "data"
    args = [
        "--config", str(FIXTURES / "train_asr_echo_tiny.yaml"), "--output_dir", str(root / exp),
        "--max_epoch", str(max_epoch), "--seed", "3", "--resume", "true", "--ngpu", "0",
        "--batch_bins", "30000",  # several batches an epoch (the test checks the step count)
        "--use_tensorboard", "false", "--num_att_plot", "0",
        "--use_preprocessor", "true", "--token_type", "char", "--token_list", str(root / "tokens.txt"),
        "--non_linguistic_symbols", "none", "--cleaner", "none", "--g2p", "none", "--frontend_conf", "fs=8000",
    ]
    for part in ("train", "valid"):
        args += [f"--{part}_data_path_and_name_and_type", f"{data / part / 'wav.scp'},speech,sound",
                 f"--{part}_data_path_and_name_and_type", f"{data / part / 'text'},text,text",
                 f"--{part}_shape_file", str(data / part / "speech_shape"),
                 f"--{part}_shape_file", str(data / part / "text_shape.char")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "echo_plugin.bin.asr_train", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same_tensors(a, b, where: str) -> None:
    """Nested dicts/lists of tensors and numbers: equal structure, tensors allclose (tight)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape, where
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=where)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_two_epochs_equal_one_epoch_and_a_resumed_one(workdir: Path) -> None:
    train(workdir, "straight", max_epoch=2)
    train(workdir, "resumed", max_epoch=1)
    straight, resumed = workdir / "straight", workdir / "resumed"
    assert not (resumed / "2epoch.pth").exists()
    assert_same_tensors(load(straight / "1epoch.pth"), load(resumed / "1epoch.pth"), "1epoch.pth")

    log = train(workdir, "resumed", max_epoch=2)
    assert "The training was resumed using" in log
    assert "1epoch results" not in log and "2epoch results" in log  # continues at epoch 2, epoch 1 not redone

    final_straight, final_resumed = load(straight / "2epoch.pth"), load(resumed / "2epoch.pth")
    assert_same_tensors(final_straight, final_resumed, "2epoch.pth")
    first = load(straight / "1epoch.pth")
    assert any(not torch.equal(first[k], final_straight[k]) for k in first)  # epoch 2 did train
    checkpoints = load(straight / "checkpoint.pth"), load(resumed / "checkpoint.pth")
    steps = checkpoints[0]["schedulers"][0]["_step_count"] - 1
    assert steps >= 6, f"only {steps} optimizer steps in two epochs"
    for part in ("model", "optimizers", "schedulers"):
        assert_same_tensors(checkpoints[0][part], checkpoints[1][part], f"checkpoint.pth {part}")
