"""Tiny ESPnet ASR models with the dual decoder, built through ASRTask (shared by the dual/freezing tests)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

import echo_plugin
from test.asr.espnet_build import TOKENS

ECHO_ENCODER = "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 2, input_layer: conv2d}"
DUAL_DECODER = "{attention_heads: 2, linear_units: 32, num_blocks: 2, gate_hidden: 8}"


def build(
    workdir: Path,
    *options: str,
    encoder: str = "echo",
    encoder_conf: str = ECHO_ENCODER,
    decoder: str = "dual",
    decoder_conf: str = DUAL_DECODER,
    model: str = "echo_freeze",
    model_conf: Sequence[str] = (),
    tokens: Sequence[str] = TOKENS,
):
    """(ASRTask, args, model), by default Echo encoder + dual decoder; ``options``: further ESPnet arguments."""
    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    (workdir / "tokens.txt").write_text("\n".join(tokens) + "\n")
    argv = [
        "--token_list", str(workdir / "tokens.txt"), "--token_type", "char", "--input_size", "20",
        "--normalize", "none", "--model", model, "--model_conf", "ctc_weight=0.3",
        "--encoder", encoder, "--encoder_conf", encoder_conf, "--decoder", decoder, "--decoder_conf", decoder_conf,
    ]  # fmt: skip
    for conf in model_conf:
        argv += ["--model_conf", conf]
    args = ASRTask.get_parser().parse_args(argv + list(options))
    torch.manual_seed(0)
    return ASRTask, args, ASRTask.build_model(args)


def batch():
    """speech (2, 40, 20) features, lengths, text (2, 4) padded with -1, text lengths."""
    torch.manual_seed(1)
    text = torch.tensor([[2, 3, 4, 5], [6, 2, -1, -1]])
    return torch.randn(2, 40, 20), torch.tensor([40, 29]), text, torch.tensor([4, 2])
