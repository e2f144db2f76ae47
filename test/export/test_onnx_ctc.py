"""The CTC path exported to ONNX: parity with PyTorch, INT8, greedy decoding, the bundle and CLI, failures."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("onnx", reason="onnx is not installed (the export extra: pip install -e .[export])")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the export extra: pip install -e .[export])")

from echo_plugin.export import onnx_ctc  # noqa: E402
from echo_plugin.export.onnx_ctc import (  # noqa: E402
    ExportError,
    ctc_greedy_ids,
    ctc_greedy_text,
    export_ctc,
    ort_session,
    quantize_int8,
    reference_logp,
    run_session,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "train_asr_echo_tiny.yaml"
FS = 8000
TOKENS = ["<blank>", "<unk>", "a", "b", "c", "d", "<space>", "<sos/eos>"]
TEST_SECONDS = (0.45, 1.2, 2.7)  # none of them a length the export itself checked on
DIGITS = ["ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"]


def build_model(workdir: Path, *options: str, tokens: list[str] = TOKENS, token_type: str = "char"):
    """(args, model): the tiny Echo fixture at 8 kHz, random weights, eval mode."""
    import echo_plugin

    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    token_file = workdir / "tokens.txt"
    token_file.write_text("\n".join(tokens) + "\n")
    args = ASRTask.get_parser().parse_args(
        ["--config", str(FIXTURE), "--token_list", str(token_file), "--token_type", token_type,
         "--frontend_conf", f"fs={FS}", *options]
    )
    torch.manual_seed(0)
    return args, ASRTask.build_model(args).eval()


def speechlike(seconds: float, seed: int) -> torch.Tensor:
    """(1, N): a gliding harmonic tone with an envelope, noise, and a stretch of digital silence."""
    rng = np.random.default_rng(seed)
    n = round(seconds * FS)
    t = np.arange(n) / FS
    f0 = 120 + 60 * t / max(seconds, 1e-3)
    phase = 2 * np.pi * np.cumsum(f0) / FS
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8)) * np.sin(np.pi * t / seconds) ** 2
    x = 0.3 * voiced + 0.01 * rng.standard_normal(n)
    x[n // 3: n // 3 + n // 10] = 0.0
    return torch.from_numpy(x.astype(np.float32))[None]


def stats_file(workdir: Path) -> Path:
    rng = np.random.default_rng(0)
    feats = rng.normal(-4.0, 2.0, size=(400, 40))
    path = workdir / "pooled_stats.npz"
    np.savez(path, count=np.array(400.0), sum=feats.sum(0), sum_square=(feats ** 2).sum(0))
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("onnx_ctc")
    _, model = build_model(workdir)
    report = export_ctc(model, workdir / "model.onnx", FS)
    return model, workdir, report


def assert_parity(model, session, inputs=None):
    for seed, seconds in enumerate(TEST_SECONDS):
        speech = speechlike(seconds, seed) if inputs is None else inputs[seed]
        ref = reference_logp(model, speech, torch.tensor([speech.shape[1]]))
        logp, lengths = run_session(session, speech.numpy())
        assert logp.shape == tuple(ref.shape), seconds
        assert int(lengths[0]) == ref.shape[1]
        assert np.abs(logp - ref.numpy()).max() <= 1e-4, seconds
        assert ctc_greedy_ids(logp) == ctc_greedy_ids(ref), seconds


def test_onnx_matches_pytorch_on_three_lengths(exported):
    model, workdir, report = exported
    assert report.format == "onnx" and report.failed_parts == {} and report.onnx_error is None
    assert all(diff <= 1e-4 for diff in report.parity_max_abs.values()) and report.greedy_identical
    assert_parity(model, ort_session(workdir / "model.onnx"))


def test_rotaries_swapped_for_export_only(exported):
    """The fixture's standard rotary exports through the cos/sin rewrite; the model keeps its own method."""
    model, _, report = exported
    assert report.swapped_layers == ["encoder.blocks.0.self_attn.rotary", "encoder.blocks.1.self_attn.rotary"]
    assert all("rotate" not in model.get_submodule(name).__dict__ for name in report.swapped_layers)


def test_logmel_frontend_equals_espnet_stft(exported):
    model, _, _ = exported
    frontend = onnx_ctc.LogMelFrontend(model.frontend)
    speech = speechlike(1.1, 7)
    lengths = torch.tensor([speech.shape[1]])
    with torch.no_grad():
        ours, our_lengths = frontend(speech, lengths)
        theirs, their_lengths = model.frontend(speech, lengths)
    assert torch.equal(our_lengths, their_lengths)
    assert (ours - theirs).abs().max() < 1e-4


@pytest.mark.parametrize("normalize", ["none", "global_mvn", "speech_mvn", "speaker_mvn"])
def test_normalizations_export(tmp_path, normalize):
    options = ["--normalize", normalize]
    if normalize != "none":
        options += ["--normalize_conf", f"stats_file={stats_file(tmp_path)}"]
    if normalize == "speaker_mvn":
        options += ["--model", "echo"]  # EchoASRModel: its normalize falls back to the pooled statistics
    _, model = build_model(tmp_path, *options)
    report = export_ctc(model, tmp_path / "model.onnx", FS, check_seconds=(0.8, 1.9))
    assert report.format == "onnx", report
    assert_parity(model, ort_session(tmp_path / "model.onnx"))


def test_rms_norm_and_absolute_positions_export(tmp_path):
    """``norm: rms_norm`` (no ONNX symbolic at opset 17) and ESPnet's sinusoid table (``abs_pos``) are
    rewritten for export; the model keeps its own layers."""
    _, model = build_model(tmp_path, "--encoder_conf", "norm=rms_norm", "--encoder_conf", "abs_pos=true")
    assert isinstance(model.encoder.after_norm, torch.nn.RMSNorm)
    report = export_ctc(model, tmp_path / "model.onnx", FS)
    assert report.format == "onnx" and "encoder.after_norm" in report.swapped_layers
    assert "encoder.embed.out.1" in report.swapped_layers  # Conv2dSubsampling's PositionalEncoding
    assert "forward" not in model.encoder.after_norm.__dict__
    assert_parity(model, ort_session(tmp_path / "model.onnx"))


def test_int8_runs_and_gives_valid_token_ids(exported):
    import onnx

    _, workdir, _ = exported
    int8 = quantize_int8(workdir / "model.onnx", workdir / "model.int8.onnx")
    nodes = onnx.load(str(int8)).graph.node
    assert any(n.op_type == "MatMulInteger" for n in nodes)
    frontend = [n for n in nodes if n.name.startswith("/frontend/")]
    assert frontend and not any("Integer" in n.op_type for n in frontend)  # the log-mel stays float32
    session = ort_session(int8)
    for seed, seconds in enumerate(TEST_SECONDS):
        logp, _ = run_session(session, speechlike(seconds, seed).numpy())
        assert logp.shape[-1] == len(TOKENS) and np.isfinite(logp).all()
        ids = ctc_greedy_ids(logp)
        assert isinstance(ids, list) and all(isinstance(i, int) and 0 < i < len(TOKENS) for i in ids)


def one_hot_logp(path: list[int], vocab: int) -> np.ndarray:
    logp = np.full((1, len(path), vocab), math.log(1e-3), dtype=np.float32)
    logp[0, np.arange(len(path)), path] = 0.0
    return logp


def test_ctc_greedy_text_char():
    a, b, c, space, eos = 2, 3, 4, 6, 7
    logp = one_hot_logp([0, a, a, 0, a, b, b, space, 0, c, eos, 0], len(TOKENS))
    result = ctc_greedy_text(logp, TOKENS)
    assert result.token_ids == [a, a, b, space, c]
    assert result.tokens == ["a", "a", "b", "<space>", "c"]
    assert result.text == "aab c"
    assert ctc_greedy_ids(torch.from_numpy(logp[0])) == [a, a, b, space, c, eos]


def train_bpe(workdir: Path) -> tuple[Path, list[str]]:
    """A tiny sentencepiece BPE model of the digit words, and ESPnet's token list for it."""
    import sentencepiece as spm

    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(DIGITS, size=3)) for _ in range(300)]
    prefix = workdir / "bpe"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(prefix), vocab_size=30,
                                   model_type="bpe", character_coverage=1.0, hard_vocab_limit=False,
                                   minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    return Path(f"{prefix}.model"), ["<blank>", "<unk>", *[p for p in pieces if p not in ("<unk>", "<s>", "</s>")],
                                      "<sos/eos>"]


def test_ctc_greedy_text_bpe(tmp_path):
    import sentencepiece as spm

    bpemodel, tokens = train_bpe(tmp_path)
    sp = spm.SentencePieceProcessor(model_file=str(bpemodel))
    pieces = sp.encode("TWO SIX SIX", out_type=str)
    ids = [tokens.index(p) for p in pieces]
    path = [0]
    for i in ids:
        path += [i, i, 0]
    result = ctc_greedy_text(one_hot_logp(path, len(tokens)), tokens, bpemodel)
    assert result.token_ids == ids and result.text == "TWO SIX SIX"


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A packed archive (ESPnet's packer, as stage 8) of a tiny BPE model, and the model."""
    from espnet2.main_funcs.pack_funcs import pack

    workdir = tmp_path_factory.mktemp("packed")
    bpemodel, tokens = train_bpe(workdir)
    args, model = build_model(workdir, "--normalize", "global_mvn", "--normalize_conf",
                              f"stats_file={stats_file(workdir)}", tokens=tokens, token_type="bpe")
    config = vars(args)
    config.update(bpemodel=str(bpemodel), token_list=tokens)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(model.state_dict(), workdir / "model.pth")
    archive = workdir / "model.zip"
    pack(files={"asr_model_file": workdir / "model.pth"}, yaml_files={"asr_train_config": workdir / "config.yaml"},
         outpath=archive, option=[bpemodel, workdir / "pooled_stats.npz"])
    return archive, model, tokens, bpemodel


def test_cli_exports_packed_model_and_decodes(packed, tmp_path, capsys):
    from echo_plugin.bin.export_onnx import main

    archive, model, tokens, bpemodel = packed
    wav = tmp_path / "a.wav"
    speech = speechlike(1.3, 3)
    import soundfile as sf

    sf.write(wav, speech[0].numpy(), FS, subtype="FLOAT")
    out = tmp_path / "exported"
    assert main(["--model", str(archive), "--out_dir", str(out), "--wav", str(wav)]) == 0
    for name in ("model.onnx", "model.int8.onnx", "tokens.txt", "bpe.model", "export.json"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "export.json").read_text())
    assert meta["fs"] == FS and meta["token_type"] == "bpe" and meta["report"]["format"] == "onnx"
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [line["model"] for line in lines] == ["fp32", "int8"]

    fp32 = onnx_ctc.OnnxCTC(out)
    ref = reference_logp(model, speech, torch.tensor([speech.shape[1]]))
    assert np.abs(fp32.log_posteriors(speech[0].numpy()) - ref[0].numpy()).max() <= 1e-4
    expected = ctc_greedy_text(ref, tokens, bpemodel)
    assert lines[0]["text"] == expected.text == fp32.transcribe(wav).text


def test_cli_needs_a_model(tmp_path):
    from echo_plugin.bin.export_onnx import main

    with pytest.raises(SystemExit):
        main(["--out_dir", str(tmp_path)])


def test_speaker_mvn_without_statistics_is_refused(tmp_path):
    _, model = build_model(tmp_path, "--normalize", "speaker_mvn", "--model", "echo")
    with pytest.raises(ExportError, match="speaker_mvn without stats_file"):
        export_ctc(model, tmp_path / "model.onnx", FS)


class ComplexScale(torch.nn.Module):
    """A normalize layer through complex numbers, which ONNX cannot hold (TorchScript can)."""

    def forward(self, x, lengths):
        z = torch.view_as_complex(torch.stack([x, torch.zeros_like(x)], dim=-1))
        return torch.view_as_real(z * (0.5 + 0.0j))[..., 0], lengths


def test_a_part_onnx_cannot_take_falls_back_to_torchscript_and_is_named(tmp_path):
    _, model = build_model(tmp_path, "--normalize", "none")
    model.normalize = ComplexScale()
    with pytest.raises(ExportError, match="normalize: ComplexScale"):
        export_ctc(model, tmp_path / "model.onnx", FS, torchscript_fallback=False)
    report = export_ctc(model, tmp_path / "model.onnx", FS)
    assert report.format == "torchscript" and list(report.failed_parts) == ["normalize"], report
    assert not (tmp_path / "model.onnx").exists()
    traced = torch.jit.load(report.path)
    speech = speechlike(2.2, 5)
    with torch.no_grad():
        logp, _ = traced(speech, torch.tensor([speech.shape[1]]))
    ref = reference_logp(model, speech, torch.tensor([speech.shape[1]]))
    assert (logp - ref).abs().max() <= 1e-4
