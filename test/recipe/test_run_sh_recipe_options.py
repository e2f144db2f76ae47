"""run.sh passes a config's recipe: options to asr.sh after its own defaults and before the user's."""
from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from test.recipe.recipe_helpers import copy_recipe, recipe_env

# asr.sh stand-in: writes the arguments it was given, one per line.
FAKE_ASR = """#!/usr/bin/env bash
printf '%s\\n' "$@" > asr_args.txt
"""


def fake_asr(root: Path) -> None:
    """Replace the copy's asr.sh (a link to the shared one, which must stay as it is) by the stand-in."""
    asr = root / "asr.sh"
    asr.unlink()
    asr.write_text(FAKE_ASR)
    asr.chmod(asr.stat().st_mode | stat.S_IEXEC)


def given(root: Path, *args: str) -> list[str]:
    subprocess.run(["./run.sh", *args], cwd=root, env=recipe_env(), check=True, capture_output=True, text=True)
    return (root / "asr_args.txt").read_text().split("\n")[:-1]


def last(args: list[str], option: str) -> str:
    """The value asr.sh's parse_options ends with: the last one given."""
    return args[len(args) - 1 - args[::-1].index(option) + 1]


def test_the_config_options_come_between_the_defaults_and_the_users(tmp_path: Path) -> None:
    root = copy_recipe(tmp_path)
    fake_asr(root)
    whisper = "conf/tuning/train_asr_echo_whisper_frontend.yaml"
    args = given(root, "--asr_config", whisper)
    assert last(args, "--feats_normalize") == "none" and last(args, "--speaker_adapt") == "false"
    assert last(args, "--stats_config") == "conf/tuning/train_asr_echo.yaml"
    assert last(args, "--speed_perturb_factors") == ""
    default = given(root)  # the recipe's default is the pretrained front end, with its options
    assert last(default, "--asr_config") == whisper
    assert all(last(default, o) == last(args, o) for o in ("--feats_normalize", "--speed_perturb_factors",
                                                            "--speaker_adapt", "--stats_config"))
    args = given(root, "--asr_config", whisper, "--speaker_adapt", "true")
    assert last(args, "--speaker_adapt") == "true"  # the user's option wins
    args = given(root, "--asr_config", "conf/tuning/train_asr_echo.yaml")
    assert last(args, "--feats_normalize") == "speaker_mvn" and "--stats_config" not in args
    assert last(args, "--speed_perturb_factors") == "0.9 1.0 1.1"
    args = given(root, "--asr_config", "conf/tuning/train_asr_echo_multifeature.yaml")
    assert last(args, "--feature_cache") == "pitch harmonic aperiodic"


def test_a_config_with_a_broken_recipe_map_stops_run_sh(tmp_path: Path) -> None:
    root = copy_recipe(tmp_path)
    (root / "conf" / "bad.yaml").write_text("recipe: [--fs, 8000]\n")
    fake_asr(root)
    done = subprocess.run(["./run.sh", "--asr_config", "conf/bad.yaml"], cwd=root, env=recipe_env(),
                          capture_output=True, text=True)
    assert done.returncode != 0 and "recipe must be a map" in done.stderr
    assert not (root / "asr_args.txt").exists()
