"""bench/gpu_train_throughput.py on CPU: it runs without ESPnet, both models learn, the report is
complete, the assembled Echo stack is ESPnet's EchoEncoder / EchoDecoder, and the FLOP count is right.

Timings are never asserted.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
import yaml
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from bench import gpu_train_throughput as gtt

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_train_throughput.py"
RECIPE = ROOT / "egs" / "librispeech_100" / "asr1"

# Runs the script as the lent GPU machine would (no ESPnet): any espnet / espnet2 import raises
# ImportError; each first import of a non-stdlib top-level module is noted with the top-level
# package of the code importing it; the echo_plugin modules loaded are listed with their files.
BLOCKED_RUN = r"""
import json, runpy, sys

edges = set()

class NoESPnet:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in ("espnet", "espnet2"):
            raise ImportError(f"{name} is blocked: the GPU bench must not import ESPnet")
        if top not in sys.stdlib_module_names:
            frame = sys._getframe(1)
            while frame is not None and (
                frame.f_code.co_filename.startswith("<frozen") or "/importlib/" in frame.f_code.co_filename
            ):
                frame = frame.f_back
            importer = "?" if frame is None else str(frame.f_globals.get("__name__", "?"))
            edges.add((importer.split(".")[0], top))
        return None

sys.meta_path.insert(0, NoESPnet())
script, modules_out, *argv = sys.argv[1:]
sys.argv = [script, *argv]
runpy.run_path(script, run_name="__main__")
loaded = {m: getattr(mod, "__file__", None) for m, mod in sys.modules.items() if m.split(".")[0] == "echo_plugin"}
with open(modules_out, "w") as f:
    json.dump({"edges": sorted(edges), "echo_plugin": loaded, "all": sorted(sys.modules)}, f)
"""
ALLOWED = {"torch", "echo_plugin"}


def imported_tops(path: Path, in_functions: bool = True) -> set:
    """Top-level packages of a file's absolute imports; ``in_functions=False``: only those that run
    on import (not inside a function or lambda)."""
    tops, todo = set(), [ast.parse(path.read_text())]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            tops.add(node.module.split(".")[0])
        if in_functions or not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))
    return tops


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny CPU run in a subprocess with ESPnet blocked: 6 steps on one fixed batch."""
    tmp = tmp_path_factory.mktemp("gpu_bench")
    out, modules = tmp / "report.json", tmp / "modules.json"
    argv = ["--device", "cpu", "--tiny", "--steps", "6", "--warmup", "0", "--batches", "1", "--peak_tflops", "0.5"]
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, str(SCRIPT), str(modules), *argv, "--out", str(out)],
        cwd=tmp,  # not the repository: the script must find echo_plugin itself
        capture_output=True,
        text=True,
        timeout=600,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"report": json.loads(out.read_text()), "modules": json.loads(modules.read_text()), "stdout": proc.stdout}


def test_imports_nothing_beyond_torch_and_echo_plugin(cpu_run: dict) -> None:
    """At run time (ESPnet blocked, and no module of it loaded) and in the source of the script
    and of every echo_plugin module it loaded: only the standard library, torch and echo_plugin."""
    modules = cpu_run["modules"]
    assert not [m for m in modules["all"] if m.split(".")[0] in ("espnet", "espnet2")]
    ours = {(importer, top) for importer, top in modules["edges"] if importer in ("__main__", "echo_plugin")}
    assert ours and {top for _, top in ours} <= ALLOWED, ours
    files = [Path(f) for f in modules["echo_plugin"].values() if f]
    assert files and all(f.is_relative_to(ROOT / "echo_plugin") for f in files)
    assert not [m for m in modules["echo_plugin"] if m.startswith(("echo_plugin.asr", "echo_plugin.espnet_legacy"))]
    # The script and echo_plugin.nn: every import; the rest (echo_plugin/__init__.py's register(),
    # the catalog's tables) import ESPnet-facing code inside functions the script never calls.
    nn = ROOT / "echo_plugin" / "nn"
    for path in [SCRIPT, *files]:
        tops = imported_tops(path, in_functions=path == SCRIPT or path.is_relative_to(nn))
        assert tops - set(sys.stdlib_module_names) <= ALLOWED, path
    assert "espnet2" in imported_tops(ROOT / "echo_plugin" / "__init__.py")  # the check sees function bodies


def test_report_has_every_field(cpu_run: dict) -> None:
    report = cpu_run["report"]
    for key in ("device", "device_name", "torch", "widths", "amp", "peak_bf16_tflops_assumed", "batch", "steps"):
        assert key in report, key
    assert report["amp"] == "bf16" and report["widths"] == asdict(gtt.TINY)
    assert set(report["models"]) == {"echo", "torch_reference"}
    for kind, numbers in report["models"].items():
        assert set(gtt.REPORT_FIELDS) <= set(numbers), kind
        assert numbers["steps_timed"] == 6 and len(numbers["losses"]) == 6
        for field in ("utterances_per_second", "audio_hours_per_gpu_hour", "achieved_tflops", "mfu"):
            assert numbers[field] > 0, (kind, field)
        assert numbers["peak_memory_bytes"] is None  # CPU: no CUDA allocator
        assert numbers["mfu"] == pytest.approx(numbers["achieved_tflops"] / 0.5)
        assert numbers["params"] == numbers["encoder_params"] + numbers["decoder_params"] + numbers["ctc_params"]
    assert "echo_vs_reference" in report
    assert "echo " in cpu_run["stdout"] and "torch_reference " in cpu_run["stdout"]


@pytest.mark.parametrize("kind", gtt.MODELS)
def test_loss_falls_on_a_fixed_batch(cpu_run: dict, kind: str) -> None:
    losses = cpu_run["report"]["models"][kind]["losses"]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.8 * losses[0], losses
    assert sum(losses[-2:]) < sum(losses[:2]), losses


def test_widths_are_the_librispeech_default_config() -> None:
    run_sh = (RECIPE / "run.sh").read_text()
    default = re.search(r"^asr_config=(\S+)$", run_sh, re.M).group(1)
    assert RECIPE / default == ROOT / gtt.CONFIG
    assert re.search(r"--nbpe 5000\b", run_sh)
    conf = yaml.safe_load((ROOT / gtt.CONFIG).read_text())
    enc, dec, w = conf["encoder_conf"], conf["decoder_conf"], gtt.LIBRISPEECH
    assert conf["encoder"] == "echo" and conf["decoder"] == "echo"
    assert (enc["output_size"], enc["attention_heads"], enc["linear_units"], enc["num_blocks"]) == (
        w.output_size, w.attention_heads, w.linear_units, w.encoder_blocks,
    )  # fmt: skip
    assert (dec["attention_heads"], dec["linear_units"], dec["num_blocks"]) == (
        w.attention_heads, w.linear_units, w.decoder_blocks,
    )  # fmt: skip
    assert enc["input_layer"] == "conv2d" and enc["abs_pos"] is True
    assert enc["layers"] == [
        {"num": w.encoder_blocks, "attention": "standard", "rotary": {"type": "standard", "conf": {"theta": 10000.0}}}
    ]
    assert "layers" not in dec
    for rate in (enc["dropout_rate"], enc["attention_dropout_rate"], dec["dropout_rate"]):
        assert rate == w.dropout
    assert conf["model_conf"]["ctc_weight"] == w.ctc_weight and conf["model_conf"]["lsm_weight"] == w.lsm_weight
    assert conf["frontend_conf"]["hop_length"] == gtt.HOP
    assert "38,832,912" in (ROOT / gtt.CONFIG).read_text().splitlines()[5]


def _espnet_modules(w: gtt.Widths):
    """ESPnet-facing EchoEncoder / EchoDecoder built as the config builds them, at widths ``w``."""
    from echo_plugin.asr.decoder.echo_decoder import EchoDecoder
    from echo_plugin.asr.encoder.echo_encoder import EchoEncoder

    encoder = EchoEncoder(
        w.input_size, output_size=w.output_size, attention_heads=w.attention_heads, linear_units=w.linear_units,
        num_blocks=w.encoder_blocks, dropout_rate=w.dropout, attention_dropout_rate=w.dropout, input_layer="conv2d",
        abs_pos=True,
        layers=[{"num": w.encoder_blocks, "attention": "standard",
                 "rotary": {"type": "standard", "conf": {"theta": w.rotary_theta}}}],
    )  # fmt: skip
    decoder = EchoDecoder(
        w.vocab, w.output_size, attention_heads=w.attention_heads, linear_units=w.linear_units,
        num_blocks=w.decoder_blocks, dropout_rate=w.dropout, self_attention_dropout_rate=w.dropout,
        src_attention_dropout_rate=w.dropout,
    )  # fmt: skip
    return encoder, decoder


def _shapes(module: torch.nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_full_size_stack_is_espnets_echo_encoder_and_decoder() -> None:
    """Same state-dict names and shapes, so the config's stated 38,832,912 parameters; the torch
    reference has the same count."""
    w = gtt.LIBRISPEECH
    encoder, decoder = _espnet_modules(w)
    echo = gtt.build_model("echo", w)
    assert _shapes(echo.encoder) == _shapes(encoder)
    assert _shapes(echo.decoder) == _shapes(decoder)
    assert gtt.count_params(echo.encoder) == 25_509_888 and gtt.count_params(echo.decoder) == 12_038_024
    assert gtt.count_params(echo) == 38_832_912
    reference = gtt.build_model("torch_reference", w)
    assert gtt.count_params(reference.encoder) == gtt.count_params(echo.encoder)
    assert gtt.count_params(reference.decoder) == gtt.count_params(echo.decoder)


def test_stack_outputs_equal_espnets_modules_with_their_weights() -> None:
    w = gtt.Widths(output_size=32, attention_heads=4, linear_units=48, encoder_blocks=2, decoder_blocks=2, vocab=30)
    torch.manual_seed(0)
    encoder, decoder = _espnet_modules(w)
    stack_enc, stack_dec = gtt.EchoEncoderStack(w), gtt.EchoDecoderStack(w)
    stack_enc.load_state_dict(encoder.state_dict())
    stack_dec.load_state_dict(decoder.state_dict())
    for module in (encoder, decoder, stack_enc, stack_dec):
        module.eval()
    batch = gtt.make_batches(w, 1, 3, 0.6, 1.2, 4.0, seed=1)[0]
    with torch.no_grad():
        hs, hlens, _ = encoder(batch.feats, batch.feat_lens)
        ours, our_lens = stack_enc(batch.feats, batch.feat_lens)
        assert torch.equal(hlens, our_lens)
        real = gtt.real_mask(hlens, hs.size(1))
        torch.testing.assert_close(ours[real], hs[real], rtol=1e-5, atol=1e-5)
        logits, _ = decoder(hs, hlens, batch.ys_in, batch.ys_lens + 1)
        our_logits = stack_dec(hs, hlens, batch.ys_in, batch.ys_lens + 1)
        tokens = gtt.real_mask(batch.ys_lens + 1, logits.size(1))
        torch.testing.assert_close(our_logits[tokens], logits[tokens], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", gtt.MODELS)
def test_analytic_flops_match_torchs_flop_counter(kind: str) -> None:
    """A training step's forward and forward + backward FLOPs on an unpadded batch, counted by torch
    (attention on the math path, so that its matmuls are seen; dropout 0 so that torch's
    MultiheadAttention keeps its training path), equal :func:`forward_flops` / :func:`step_flops`."""
    w = gtt.Widths(output_size=32, attention_heads=4, linear_units=48, encoder_blocks=2, decoder_blocks=2, vocab=30,
                   dropout=0.0)  # fmt: skip
    batch = gtt.make_batches(w, 1, 2, 1.3, 1.3, 3.5)[0]  # equal lengths: no padding
    assert gtt.step_flops(w, batch, padded=True) == gtt.step_flops(w, batch)
    model = gtt.build_model(kind, w).train()
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as forward:
        loss = model(batch)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as step:
        model(batch).backward()
    assert forward.get_total_flops() == sum(
        gtt.forward_flops(w, int(f), int(n) + 1) for f, n in zip(batch.feat_lens, batch.ys_lens)
    )
    assert step.get_total_flops() == gtt.step_flops(w, batch)
    assert torch.isfinite(loss)


def test_peak_by_device_name(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda", 0)
    for name, peak in (("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H200", 989.4), ("NVIDIA H100 PCIe", 756.0),
                       ("NVIDIA A100-SXM4-80GB", 312.0), ("Some GPU", None)):  # fmt: skip
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device, name=name: name)
        assert gtt.peak_tflops(cuda, None)[0] == peak, name
    assert gtt.peak_tflops(torch.device("cpu"), None)[0] is None
    assert gtt.peak_tflops(torch.device("cpu"), 7.0) == (7.0, "--peak_tflops")
