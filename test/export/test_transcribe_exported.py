"""``transcribe --model <exported bundle>``: the CTC path in onnxruntime decodes each file as PyTorch's greedy CTC
does, bad files are one stderr line each (the others still decoded, exit 1), long files are split, options that
do not apply to a bundle are refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the export extra: pip install -e .[export])")

from echo_plugin.bin.transcribe import main  # noqa: E402
from echo_plugin.export.onnx_ctc import OnnxCTC, ctc_greedy_text, export_bundle, reference_logp  # noqa: E402
from test.export.test_onnx_ctc import FS, packed, speechlike  # noqa: E402, F401 (packed: the fixture)


@pytest.fixture(scope="module")
def bundle(packed, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("bundle") / "exported"
    export_bundle(packed[0], out, int8=True)
    return out


def write(path, speech: torch.Tensor):
    sf.write(path, speech[0].numpy(), FS, subtype="FLOAT")
    return path


def test_a_folder_of_good_and_bad_files(bundle, packed, tmp_path, capsys):  # noqa: F811
    _, model, tokens, bpemodel = packed
    good = [write(tmp_path / f"good{i}.wav", speechlike(seconds, i)) for i, seconds in enumerate((0.8, 1.6))]
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio\n")
    missing = tmp_path / "missing.wav"
    files = [str(good[0]), str(not_audio), str(missing), str(good[1])]
    assert main(["--model", str(bundle), *files]) == 1
    captured = capsys.readouterr()
    out, err = captured.out.splitlines(), captured.err.splitlines()
    expected = []
    for path in good:  # PyTorch's own CTC path, decoded greedily
        speech = torch.from_numpy(sf.read(path, dtype="float32")[0])[None]
        logp = reference_logp(model, speech, torch.tensor([speech.shape[1]]))
        expected.append(f"{path} {ctc_greedy_text(logp, tokens, bpemodel).text}")
    assert out == expected
    assert len(err) == 3 and str(not_audio) in err[0] and str(missing) in err[1], err
    assert err[2].startswith("transcribe: 2 input(s) failed")


def test_int8_jsonl_and_a_long_recording_split(bundle, tmp_path, capsys):
    pieces = [speechlike(1.5, 5), torch.zeros(1, int(0.6 * FS)), speechlike(1.5, 6)]
    long = write(tmp_path / "long.wav", torch.cat(pieces, dim=1))  # 3.6 s with a pause in the middle
    assert main(["--model", str(bundle), "--int8", "--output", "jsonl", "--max_chunk_seconds", "2.5",
                 str(long)]) == 0  # fmt: skip
    record = json.loads(capsys.readouterr().out)
    assert record["id"] == str(long) and record["seconds"] == pytest.approx(3.6)
    chunks = record["chunks"]
    assert len(chunks) == 2 and chunks[0]["start"] == 0 and 1.5 <= chunks[0]["end"] <= 2.1
    assert chunks[1]["end"] == pytest.approx(3.6)
    int8 = OnnxCTC(bundle, int8=True)
    samples = sf.read(long, dtype="float32")[0]
    for chunk in chunks:
        piece = samples[round(chunk["start"] * FS) : round(chunk["end"] * FS)]
        assert chunk["text"] == ctc_greedy_text(int8.log_posteriors(piece), int8.token_list, int8.bpemodel).text
    assert record["text"] == " ".join(c["text"] for c in chunks if c["text"])
    assert np.isfinite(int8.log_posteriors(samples)).all()


@pytest.mark.parametrize("option", [["--nbest", "2"], ["--batch_size", "4"], ["--device", "cuda"],
                                    ["--decode_config", "d.yaml"], ["--speaker", "pooled"], ["--prior_frames", "10"]])
def test_options_that_do_not_apply_to_a_bundle_are_refused(bundle, tmp_path, option, capsys):
    wav = write(tmp_path / "a.wav", speechlike(0.8, 1))
    with pytest.raises(SystemExit) as exit_:
        main(["--model", str(bundle), *option, str(wav)])
    assert exit_.value.code == 2 and "exported bundle" in capsys.readouterr().err


def test_a_bundle_without_the_asked_graph_is_one_line(bundle, tmp_path, capsys):
    import json as json_
    import shutil

    float_only = tmp_path / "float_only"
    shutil.copytree(bundle, float_only)
    meta = json_.loads((float_only / "export.json").read_text())
    del meta["int8_model"]  # as export_onnx --no_int8 leaves it
    (float_only / "export.json").write_text(json_.dumps(meta))
    wav = write(tmp_path / "a.wav", speechlike(0.8, 1))
    assert main(["--model", str(float_only), "--int8", str(wav)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("transcribe: error: ") and "no INT8 ONNX model" in err and err.count("\n") == 1
