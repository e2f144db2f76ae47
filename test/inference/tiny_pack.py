"""A tiny randomly initialised Echo model (default frontend at 8 kHz, speaker_mvn, Echo encoder and decoder)
packed by ESPnet's packer, and synthetic speech-like audio, for the transcription tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

import echo_plugin

FS = 8000
N_MELS = 20
TOKENS = ["<blank>", "<unk>", "a", "b", "c", "d", "e", "<sos/eos>"]
ENCODER_CONF = "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 2, input_layer: conv2d}"
DECODER_CONF = "{attention_heads: 2, linear_units: 32, num_blocks: 1}"
DECODE = {"beam_size": 2, "ctc_weight": 0.3}


def pooled_stats(path: Path, seed: int = 0) -> Path:
    """An ESPnet-style statistics npz (count, sum, sum_square) of N_MELS log-mel channels."""
    rng = np.random.default_rng(seed)
    count = 1000.0
    mean, std = rng.normal(-4.0, 1.0, N_MELS), rng.uniform(1.0, 3.0, N_MELS)
    np.savez(path, count=np.array(count), sum=mean * count, sum_square=(std ** 2 + mean ** 2) * count)
    return path


def pack_tiny(work: Path, encoder_conf: str = ENCODER_CONF, normalize: str = "speaker_mvn") -> Path:
    """work/tiny.zip: the packed tiny model (its decode.yaml: beam 2, CTC weight 0.3)."""
    echo_plugin.register()
    from espnet2.main_funcs.pack_funcs import pack
    from espnet2.tasks.asr import ASRTask

    (work / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    stats = pooled_stats(work / "pooled_stats.npz")
    normalize_conf = [f"stats_file={stats}"] if normalize == "speaker_mvn" else []
    args = ASRTask.get_parser().parse_args([
        "--token_list", str(work / "tokens.txt"), "--token_type", "char",
        "--frontend", "default",
        "--frontend_conf", f"{{fs: {FS}, n_fft: 256, win_length: 200, hop_length: 80, n_mels: {N_MELS}}}",
        "--normalize", normalize, *(["--normalize_conf", *normalize_conf] if normalize_conf else []),
        "--model", "echo", "--model_conf", "ctc_weight=0.3",
        "--encoder", "echo", "--encoder_conf", encoder_conf,
        "--decoder", "echo", "--decoder_conf", DECODER_CONF,
    ])  # fmt: skip
    torch.manual_seed(0)
    model = ASRTask.build_model(args)
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(vars(args)))
    decode = work / "decode.yaml"
    decode.write_text(yaml.safe_dump(DECODE))
    weights = work / "model.pth"
    torch.save(model.state_dict(), weights)
    archive = work / "tiny.zip"
    pack(files={"asr_model_file": weights}, yaml_files={"asr_train_config": config}, outpath=archive,
         option=[stats, decode])
    return archive


def babble(seconds: float, seed: int) -> np.ndarray:
    """Speech-like samples (N,) at FS: voiced bursts of varying pitch with low noise between them."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    f0 = 120 + 60 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / FS) / k for k in range(1, 6))
    envelope = (np.sin(2 * np.pi * rng.uniform(1.5, 3.0) * t + rng.uniform(0, 6)) > -0.2).astype(float)
    return (0.2 * voiced * envelope + 0.003 * rng.standard_normal(n)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray) -> Path:
    sf.write(str(path), samples, FS, subtype="PCM_16")
    return path
