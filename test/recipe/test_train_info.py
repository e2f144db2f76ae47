"""train_info.count_parameters: what the training updates, with ESPnet's freeze_param applied as ESPnet applies it."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

import echo_plugin
from echo_plugin.recipe.train_info import count_parameters, frozen_by

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "test/fixtures/train_asr_echo_tiny.yaml"


def full_config(tmp_path: Path, freeze_param: list[str]) -> tuple[Path, dict[str, int]]:
    """A config.yaml as ESPnet's trainer writes it (every option), and the built model's parameter counts per
    top-level module."""
    echo_plugin.register()
    from echo_plugin.tasks.asr import EchoASRTask

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(["<blank>", "<unk>", "A", "B", "C", "<sos/eos>"]) + "\n")
    args = EchoASRTask.get_parser().parse_args(["--config", str(TINY), "--token_list", str(tokens),
                                                "--frontend_conf", "fs=8000", "--freeze_param", *freeze_param])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(vars(args)))
    args.normalize = None
    model = EchoASRTask.build_model(args)
    counts: Counter[str] = Counter()
    for name, p in model.named_parameters():
        counts[name.split(".")[0]] += p.numel()
    return config, dict(counts)


def test_without_freeze_param_every_parameter_counts(tmp_path: Path) -> None:
    config, counts = full_config(tmp_path, [])
    assert count_parameters(config) == sum(counts.values())


def test_freeze_param_prefixes_are_not_counted(tmp_path: Path) -> None:
    config, counts = full_config(tmp_path, ["decoder", "ctc"])
    assert counts["decoder"] > 0 and counts["ctc"] > 0
    assert count_parameters(config) == sum(counts.values()) - counts["decoder"] - counts["ctc"]


def test_a_prefix_matches_whole_names_only() -> None:
    prefixes = ["decoder.blocks.1.gate"]
    assert frozen_by("decoder.blocks.1.gate", prefixes) and frozen_by("decoder.blocks.1.gate.linear.weight", prefixes)
    assert not frozen_by("decoder.blocks.1.gates.weight", prefixes)
    assert not frozen_by("decoder.blocks.10.gate.weight", ["decoder.blocks.1"])
