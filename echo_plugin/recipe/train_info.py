"""After stage 5: write what RESULTS.md reports about an experiment.

Writes into ``--exp_dir``: ``num_params`` (trainable parameters of the model
built from ``config.yaml``), ``epochs`` (epochs trained, from ESPnet's
``checkpoint.pth``) and ``env.txt`` (python / torch / espnet versions).
"""
from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch
import yaml


def count_parameters(config_file: Path) -> int:
    """Trainable parameters of the ESPnet ASR model described by a training config."""
    from echo_plugin.tasks.asr import EchoASRTask

    with config_file.open(encoding="utf-8") as handle:
        args = yaml.safe_load(handle)
    args["normalize"] = None  # the stats file is irrelevant to the count
    model = EchoASRTask.build_model(argparse.Namespace(**args))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def epochs_trained(checkpoint: Path) -> int:
    """The last finished epoch recorded by ESPnet's trainer."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return int(state["reporter"]["epoch"])


def environment() -> str:
    import espnet

    return f"python: {platform.python_version()}\ntorch: {torch.__version__}\nespnet: {espnet.__version__}"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--exp_dir", type=Path, required=True)
    args = parser.parse_args(argv)
    exp = args.exp_dir
    write_atomic(exp / "num_params", f"{count_parameters(exp / 'config.yaml')}\n")
    write_atomic(exp / "epochs", f"{epochs_trained(exp / 'checkpoint.pth')}\n")
    write_atomic(exp / "env.txt", environment() + "\n")


if __name__ == "__main__":
    main()
