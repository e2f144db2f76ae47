"""Export a trained model's CTC path (waveform -> CTC log-posteriors) to ONNX, with an INT8 copy.

    python -m echo_plugin.bin.export_onnx --model exp/asr_train_asr_echo/train_asr_echo.zip --out_dir exported/echo
    python -m echo_plugin.bin.export_onnx --asr_train_config exp/x/config.yaml \\
        --asr_model_file exp/x/valid.acc.best.pth --out_dir exported/x --no_int8
    python -m echo_plugin.bin.export_onnx --model model.zip --out_dir exported/echo --wav a.wav b.wav

Writes into ``--out_dir``: ``model.onnx`` (inputs ``speech`` (1, N) float32 and
``speech_lengths`` (1,) int64 at the model's rate; outputs ``logp`` (1, T, V) and
``logp_lengths``), ``model.int8.onnx`` (onnxruntime dynamic quantization; the
log-mel and normalization stay float32, a Whisper frontend's encoder is quantized
as the encoder is), ``tokens.txt``, ``bpe.model`` when the model has one, and
``export.json``: the rate, token type and the export report (parity with PyTorch on
two lengths, layers rewritten for export, parts that failed). A Whisper frontend
(the FSDD default) is in the graph: audio at the model's rate (8 kHz for FSDD) is
resampled to 16 kHz inside it, as the frontend does. When ONNX export fails, the
parts that fail are named and the path is saved as TorchScript (``model.ts.pt``)
instead, unless ``--no_torchscript_fallback``.
``--wav`` decodes files with the exported model(s) greedily: one JSON line per file and model.

Needs the ``export`` extra (``pip install -e .[export]``: onnx, onnxruntime). What is and
is not exported, and why: ``echo_plugin.export.onnx_ctc``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="packed model archive (stage 8's zip)")
    p.add_argument("--asr_train_config", type=Path, default=None, help="training config (instead of --model)")
    p.add_argument("--asr_model_file", type=Path, default=None, help="model weights (with --asr_train_config)")
    p.add_argument("--out_dir", type=Path, required=True, help="where the exported files go")
    p.add_argument("--no_int8", action="store_true", help="skip the INT8 (dynamic quantization) copy")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: onnx_ctc.DEFAULT_OPSET, 17)")
    p.add_argument("--atol", type=float, default=None,
                   help="parity tolerance on log-posteriors (default 1e-4; 1e-3 with a Whisper frontend)")
    p.add_argument("--no_torchscript_fallback", action="store_true",
                   help="fail instead of saving TorchScript when ONNX export fails")
    p.add_argument("--wav", nargs="*", default=[], help="audio files to decode greedily with the exported model(s)")
    args = p.parse_args(argv)
    if (args.model is None) == (args.asr_train_config is None):
        p.error("give --model, or --asr_train_config with --asr_model_file")
    if args.asr_train_config is not None and args.asr_model_file is None:
        p.error("--asr_train_config needs --asr_model_file")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from echo_plugin.export import onnx_ctc

    try:
        onnx_ctc.require_onnx()
    except ImportError as error:
        print(f"export_onnx: {error}", file=sys.stderr)
        return 1
    options = {"int8": not args.no_int8, "torchscript_fallback": not args.no_torchscript_fallback}
    if args.opset is not None:
        options["opset"] = args.opset
    if args.atol is not None:
        options["atol"] = args.atol
    try:
        meta = onnx_ctc.export_bundle(args.model, args.out_dir, config=args.asr_train_config,
                                      model_file=args.asr_model_file, **options)
    except (onnx_ctc.ExportError, FileNotFoundError, ValueError) as error:
        print(f"export_onnx: {error}", file=sys.stderr)
        return 1
    report = meta["report"]
    parity = ", ".join(f"{k}: {v:.2g}" for k, v in report["parity_max_abs"].items())
    print(f"{args.out_dir / meta['model']}: {report['format']} ({report['exporter']}); max |logp - PyTorch| {parity} "
          f"(tolerance {report['atol']:g}); "
          f"greedy output identical: {report['greedy_identical']}")
    if report["swapped_layers"]:
        print(f"  exported with real-valued equivalents: {', '.join(report['swapped_layers'])}")
    for part, why in report["failed_parts"].items():
        print(f"  ONNX failed for {part}: {why}")
    if meta.get("int8_model"):
        print(f"{args.out_dir / meta['int8_model']}: INT8 (dynamic quantization)")
    if args.wav:
        models = [("fp32", onnx_ctc.OnnxCTC(args.out_dir))] if report["format"] == "onnx" else []
        if meta.get("int8_model"):
            models.append(("int8", onnx_ctc.OnnxCTC(args.out_dir, int8=True)))
        for path in args.wav:
            for name, model in models:
                result = model.transcribe(path)
                print(json.dumps({"file": path, "model": name, "text": result.text, "tokens": result.tokens}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
