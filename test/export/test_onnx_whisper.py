"""The CTC path of a model with a Whisper front end (the FSDD default's layout) exported to ONNX.

Fast tests use a whisper-tiny-shaped front end with 1 block at random weights, built here (no
checkpoint read); the real whisper-base is checked when its packages and FSDD are installed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

pytest.importorskip("onnx", reason="onnx is not installed (the export extra: pip install -e .[export])")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the export extra: pip install -e .[export])")
pytest.importorskip("whisper", reason="openai-whisper is not installed")

from echo_plugin.asr.frontend.pretrained_whisper import weights_from_model_file  # noqa: E402
from echo_plugin.export import onnx_ctc  # noqa: E402
from echo_plugin.export.onnx_ctc import ctc_greedy_ids, ort_session, reference_logp, run_session  # noqa: E402
from echo_plugin.export.whisper_frontend import SincResample, WhisperFrontendGraph, WhisperLogMel  # noqa: E402
from test.export.test_onnx_ctc import FIXTURE, TOKENS, speechlike  # noqa: E402

FS = 8000
FSDD = Path(__file__).resolve().parents[3] / "shared" / "data" / "fsdd" / "recordings"


def whisper_config(workdir: Path, frontend_conf: dict, width: int) -> Path:
    """The tiny Echo fixture over a Whisper front end, as the FSDD default is laid out (no normalization,
    a linear pre-encoder from Whisper's ``width`` channels, conv2d2 subsampling)."""
    config = yaml.safe_load(FIXTURE.read_text())
    config.update(frontend="whisper_pretrained", frontend_conf={"fs": FS, **frontend_conf}, normalize=None,
                  preencoder="linear", preencoder_conf={"input_size": width, "output_size": 40})
    config["encoder_conf"]["input_layer"] = "conv2d2"
    path = workdir / "whisper.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def build(workdir: Path, frontend_conf: dict, width: int):
    """(args, model) in eval mode."""
    import echo_plugin

    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    token_file = workdir / "tokens.txt"
    token_file.write_text("\n".join(TOKENS) + "\n")
    args = ASRTask.get_parser().parse_args(["--config", str(whisper_config(workdir, frontend_conf, width)),
                                            "--token_list", str(token_file), "--token_type", "char"])
    torch.manual_seed(0)
    return args, ASRTask.build_model(args).eval()


def tiny_model(workdir: Path, cache_mb: float = 0):
    """A whisper-tiny-shaped front end (1 block, 384 channels) at random weights: its checkpoint is not read."""
    with weights_from_model_file():
        return build(workdir, {"whisper_model": "tiny", "checkpoint": "none", "layers": 1, "cache_mb": cache_mb}, 384)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The tiny model packed (ESPnet's packer, as stage 8; its frontend caches features) and exported by the CLI."""
    from espnet2.main_funcs.pack_funcs import pack

    from echo_plugin.bin.export_onnx import main

    workdir = tmp_path_factory.mktemp("whisper_export")
    args, model = tiny_model(workdir, cache_mb=64)
    config = vars(args)
    config["token_list"] = TOKENS
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(model.state_dict(), workdir / "model.pth")
    archive = workdir / "model.zip"
    pack(files={"asr_model_file": workdir / "model.pth"}, yaml_files={"asr_train_config": workdir / "config.yaml"},
         outpath=archive)
    report = onnx_ctc.export_ctc(model, workdir / "direct.onnx", FS)  # the cache is off meanwhile
    assert report.format == "onnx" and model.frontend.cache.max_bytes == 64 * 2**20  # and on again
    assert model.frontend.cache.used_bytes == 0  # nothing was cached: PyTorch's reference was computed
    out = workdir / "exported"
    assert main(["--model", str(archive), "--out_dir", str(out)]) == 0
    from echo_plugin.inference.transcriber import load

    deployed = load(archive).model  # transcribe's model: each file once, so its packed cache is off
    assert deployed.frontend.cache.max_bytes == 0 and model.frontend.cache.max_bytes == 64 * 2**20
    return model, out


def test_logmel_is_whispers_with_its_floor(bundle):
    model, _ = bundle
    front = model.frontend
    logmel = WhisperLogMel(front.n_fft, front.hop_length, front.mel_filters(torch.device("cpu"), front.n_mels))
    audio = torch.cat([speechlike(0.8, 1), torch.zeros(1, 4000), 1e-4 * speechlike(0.4, 2)], dim=1)
    audio = torch.nn.functional.interpolate(audio[None], scale_factor=2.0)[0]  # 16 kHz, as Whisper reads it
    with torch.no_grad():
        want, _ = front.log_mel_spectrogram(audio)
        got = logmel(audio)
    assert got.shape == want.shape == (1, 80, audio.shape[1] // 160)
    assert (got - want).abs().max() < 1e-4
    floor = want.min()  # the silence and the quiet tail sit at Whisper's floor: the maximum - 8, scaled by 1/4
    assert torch.isclose(floor, want.max() - 2.0) and (want == floor).float().mean() > 0.1
    assert torch.isclose(got.min(), got.max() - 2.0) and (got == got.min()).float().mean() > 0.1


@pytest.mark.parametrize("rates", [(8000, 16000), (12000, 16000)])
def test_resampling_is_torchaudios(rates):
    import torchaudio.functional as AF

    resample = SincResample(*rates)
    for seconds in (0.31, 1.07):
        x = speechlike(seconds, 3)[:, : round(seconds * rates[0])]
        got, lengths = resample(x, torch.tensor([x.shape[1]]))
        want = AF.resample(x, *rates)
        assert got.shape == want.shape and lengths.tolist() == [want.shape[1]]
        assert torch.equal(got, want)


def test_frontend_graph_is_the_frontend_past_whispers_30_seconds(bundle):
    """Within 30 s and beyond (Whisper's 1500 positions: ESPnet keeps the first 1500 frames)."""
    model, _ = bundle
    graph = WhisperFrontendGraph(model.frontend).eval()
    for seconds in (0.7, 30.2):
        x = 0.1 * torch.randn(1, round(seconds * FS), generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            want, want_lengths = model.frontend(x, torch.tensor([x.shape[1]]))
            got, lengths = graph(x, torch.tensor([x.shape[1]]))
        assert got.shape == want.shape and lengths.tolist() == want_lengths.tolist()
        assert (got - want).abs().max() < 1e-3


def test_cli_exports_the_whisper_model_with_parity(bundle):
    model, out = bundle
    meta = json.loads((out / "export.json").read_text())
    report = meta["report"]
    assert meta["fs"] == FS and report["format"] == "onnx" and report["failed_parts"] == {}
    assert report["atol"] == onnx_ctc.WHISPER_PARITY_ATOL and report["greedy_identical"]
    session = ort_session(out / "model.onnx")
    for seed, seconds in enumerate((0.45, 1.2, 2.7)):  # lengths the export did not check on
        speech = speechlike(seconds, seed)
        ref = reference_logp(model, speech, torch.tensor([speech.shape[1]]))
        logp, lengths = run_session(session, speech.numpy())
        assert logp.shape == tuple(ref.shape) and int(lengths[0]) == ref.shape[1]
        assert np.abs(logp - ref.numpy()).max() <= onnx_ctc.WHISPER_PARITY_ATOL, seconds
        assert ctc_greedy_ids(logp) == ctc_greedy_ids(ref), seconds


def test_int8_quantizes_whispers_encoder_not_its_logmel(bundle):
    import onnx

    _, out = bundle
    nodes = onnx.load(str(out / "model.int8.onnx")).graph.node
    integer = [n.name for n in nodes if n.op_type == "MatMulInteger"]
    assert sum(name.startswith("/frontend/whisper/") for name in integer) == 6  # q, k, v, out, 2 MLP of 1 block
    assert any(name.startswith("/encoder/") for name in integer)
    front = [n for n in nodes if n.name.startswith(("/frontend/logmel/", "/frontend/resample/"))]
    assert front and not any("Integer" in n.op_type or "Quantize" in n.op_type for n in front)
    logp, _ = run_session(ort_session(out / "model.int8.onnx"), speechlike(1.2, 0).numpy())
    assert logp.shape[-1] == len(TOKENS) and np.isfinite(logp).all()


def test_a_whisper_encoder_quantized_in_pytorch_is_refused(tmp_path):
    _, model = tiny_model(tmp_path)
    model.frontend.quantize_int8()
    with pytest.raises(onnx_ctc.ExportError, match="quantized in PyTorch"):
        onnx_ctc.export_ctc(model, tmp_path / "model.onnx", FS)


def test_real_whisper_base_exports_within_tolerance_on_fsdd_speech(tmp_path):
    """whisper-base's real weights (6 blocks) under the tiny Echo model: parity on two FSDD recordings."""
    try:
        _, model = build(tmp_path, {"whisper_model": "base", "checkpoint": "whisper-base"}, 512)
    except (FileNotFoundError, ImportError) as error:  # the weights' packages are not installed
        pytest.skip(f"whisper-base weights not installed: {error}")
    if not FSDD.is_dir():
        pytest.skip(f"FSDD recordings not at {FSDD}")
    report = onnx_ctc.export_ctc(model, tmp_path / "model.onnx", FS, torchscript_fallback=False)
    assert report.format == "onnx" and max(report.parity_max_abs.values()) <= onnx_ctc.WHISPER_PARITY_ATOL
    session = ort_session(tmp_path / "model.onnx")
    for name in ("3_lucas_10.wav", "7_george_5.wav"):
        speech = torch.from_numpy(soundfile.read(FSDD / name, dtype="float32")[0])[None]
        ref = reference_logp(model, speech, torch.tensor([speech.shape[1]]))
        logp, _ = run_session(session, speech.numpy())
        assert np.abs(logp - ref.numpy()).max() <= onnx_ctc.WHISPER_PARITY_ATOL, name
