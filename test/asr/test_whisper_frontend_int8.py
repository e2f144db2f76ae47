"""PretrainedWhisperFrontend.quantize_int8: every linear layer of the frozen encoder quantized, features close
to float32's on real speech, refused for a trained encoder."""
from __future__ import annotations

from pathlib import Path

import pytest
import soundfile
import torch

pytest.importorskip("whisper")

from echo_plugin.asr.frontend.pretrained_whisper import PretrainedWhisperFrontend  # noqa: E402

FSDD = Path(__file__).resolve().parents[3] / "shared" / "data" / "fsdd" / "recordings"


def real_frontend() -> PretrainedWhisperFrontend:
    try:
        return PretrainedWhisperFrontend("base", fs=8000)
    except (FileNotFoundError, ImportError) as error:  # the weights' packages are not installed
        pytest.skip(f"whisper-base weights not installed: {error}")


def test_int8_features_follow_float32_on_real_speech() -> None:
    front = real_frontend()
    clips = [torch.from_numpy(soundfile.read(FSDD / name, dtype="float32")[0])
             for name in ("3_lucas_10.wav", "7_george_5.wav")]
    with torch.no_grad():
        want = [front(c[None], torch.tensor([len(c)]))[0][0] for c in clips]
        front.quantize_int8()
        got = [front(c[None], torch.tensor([len(c)]))[0][0] for c in clips]
    linear = [type(m) for m in front.whisper.modules() if isinstance(m, torch.nn.Linear)]
    quantized = [m for m in front.whisper.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert not linear and len(quantized) == 6 * 6  # q, k, v, out and the two MLP layers of 6 blocks
    for g, w in zip(got, want):
        assert g.shape == w.shape
        cosine = torch.nn.functional.cosine_similarity(g, w, dim=-1)  # per frame
        assert cosine.min() > 0.9 and cosine.mean() > 0.97, (cosine.min(), cosine.mean())  # measured >= 0.947 / 0.983
        assert not torch.equal(g, w)  # the int8 weights were used
    assert front.cache.max_bytes == 0 and len(front.cache) == 0


def test_a_trained_encoder_is_not_quantized(tmp_path: Path) -> None:
    front = real_frontend()
    front.freeze_weights = False
    with pytest.raises(ValueError, match="being trained"):
        front.quantize_int8()
