"""Building a tiny ESPnet ASR model from Echo YAML confs, shared by the ESPnet-level tests."""
from __future__ import annotations

from pathlib import Path

import torch

import echo_plugin

TOKENS = ["<blank>", "<unk>", "a", "b", "c", "d", "e", "<sos/eos>"]


def build_asr(workdir: Path, encoder_conf: str, decoder_conf: str, tokens: list[str] = TOKENS):
    """(ASRTask, args, model) for ``encoder: echo`` / ``decoder: echo`` with the given YAML confs."""
    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    (workdir / "tokens.txt").write_text("\n".join(tokens) + "\n")
    args = ASRTask.get_parser().parse_args(
        [
            "--token_list", str(workdir / "tokens.txt"),
            "--token_type", "char",
            "--input_size", "20",
            "--normalize", "none",
            "--encoder", "echo", "--encoder_conf", encoder_conf,
            "--decoder", "echo", "--decoder_conf", decoder_conf,
            "--model_conf", "ctc_weight=0.3",
        ]
    )  # fmt: skip
    torch.manual_seed(0)
    return ASRTask, args, ASRTask.build_model(args)
