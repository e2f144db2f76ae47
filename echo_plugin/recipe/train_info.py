"""After stage 5: write what RESULTS.md reports about an experiment.

Writes into ``--exp_dir``: ``num_params`` (the parameters the training updates: those of the model
built from ``config.yaml`` that require gradients, less ESPnet's ``freeze_param`` prefixes), ``epochs``
(epochs trained, from ESPnet's ``checkpoint.pth``) and ``env.txt`` (python / torch / espnet versions).
"""
from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch
import yaml

from echo_plugin.recipe.io import atomic_write_text


def frozen_by(name: str, prefixes: list[str]) -> bool:
    """Whether ESPnet's ``--freeze_param`` prefixes freeze parameter ``name`` (AbsTask.main_worker's rule)."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def count_parameters(config_file: Path) -> int:
    """Parameters a training with this config updates: the model's that require gradients once ESPnet has
    applied the config's ``freeze_param`` (ESPnet does so after building, so the built model still has them)."""
    from echo_plugin.tasks.asr import EchoASRTask

    with config_file.open(encoding="utf-8") as handle:
        args = yaml.safe_load(handle)
    args["normalize"] = None  # the stats file is irrelevant to the count
    model = EchoASRTask.build_model(argparse.Namespace(**args))
    frozen = list(args.get("freeze_param") or [])
    return sum(p.numel() for name, p in model.named_parameters() if p.requires_grad and not frozen_by(name, frozen))


def epochs_trained(checkpoint: Path) -> int:
    """The last finished epoch recorded by ESPnet's trainer."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return int(state["reporter"]["epoch"])


def environment() -> str:
    import espnet

    return f"python: {platform.python_version()}\ntorch: {torch.__version__}\nespnet: {espnet.__version__}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exp_dir", type=Path, required=True)
    args = parser.parse_args(argv)
    exp = args.exp_dir
    atomic_write_text(exp / "num_params", f"{count_parameters(exp / 'config.yaml')}\n")
    atomic_write_text(exp / "epochs", f"{epochs_trained(exp / 'checkpoint.pth')}\n")
    atomic_write_text(exp / "env.txt", environment() + "\n")


if __name__ == "__main__":
    main()
