"""Every shipped training config builds through ESPnet's ASRTask.build_model (overlays merged, as asr.sh does)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import echo_plugin
from echo_plugin.recipe.overlay import espnet_config, load_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(REPO.glob("egs/*/asr1/conf/tuning/*.yaml")) + sorted(REPO.glob("conf/tuning/*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_config_builds_and_runs_forward(config: Path, tmp_path: Path) -> None:
    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(["<blank>", "<unk>", "A", "B", "C", "<sos/eos>"]) + "\n")
    merged = espnet_config(config, tmp_path)  # an overlay (base:) merged, as asr.sh trains it
    args = ASRTask.get_parser().parse_args(["--config", str(merged), "--token_list", str(tokens)])
    args.normalize = None
    model = ASRTask.build_model(args)
    fs = (load_config(config).get("frontend_conf") or {}).get("fs", 16000)
    speech = torch.randn(2, int(fs * 1.2))
    lengths = torch.tensor([speech.shape[1], speech.shape[1] // 2])
    text = torch.tensor([[2, 3, 4], [3, 2, -1]])
    loss = model(speech, lengths, text, torch.tensor([3, 2]))[0]
    assert torch.isfinite(loss)
