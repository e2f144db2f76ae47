"""A trained model's CTC path as one ONNX graph: waveform -> log-mel -> normalize -> encoder -> CTC.

    from echo_plugin.export.onnx_ctc import export_bundle, OnnxCTC
    export_bundle("exp/asr_train_asr_echo/train_asr_echo.zip", "exported/", int8=True)
    OnnxCTC("exported/").transcribe("a.wav")            # -> GreedyResult(text='TWO', token_ids=[...], ...)
    OnnxCTC("exported/", int8=True).transcribe(samples) # the INT8 model, samples (N,) at the model's rate

The exported graph maps ``speech`` (1, N) float32 and ``speech_lengths`` (1,) int64 to
``logp`` (1, T, V), the CTC log-posteriors, and ``logp_lengths`` (1,); N and T are dynamic.
It holds, as ESPnet's ``encode`` + ``ctc.log_softmax`` run them in eval mode:

* the frontend. ESPnet's ``default`` frontend (STFT -> power -> log-mel) is rebuilt in
  real arithmetic (:class:`LogMelFrontend`): ``torch.stft`` returns a complex tensor,
  and ONNX has no complex type (the TorchScript-based exporter stops with "STFT does
  not currently support complex types"); the STFT here is a strided ``conv1d`` with
  the windowed DFT basis, the same numbers up to float rounding. A Whisper frontend
  (ESPnet's ``whisper``, Echo's ``whisper_pretrained``: the FSDD default) becomes
  :class:`~echo_plugin.export.whisper_frontend.WhisperFrontendGraph`: resampling to
  16 kHz in the graph, Whisper's log-mel in the same real arithmetic (its floor at the
  maximum - 8 included), Whisper's encoder; its feature cache is off while exporting.
  Its encoder amplifies float rounding, so its parity tolerance is ``WHISPER_PARITY_ATOL``.
  Other frontends are traced as they are; the Echo frontend (``frontend: echo``) is
  refused: its pitch, harmonic and aperiodic features come from WORLD (numpy), outside
  any graph;
* the normalization the model has: ESPnet's ``global_mvn`` / ``utterance_mvn``, or
  Echo's ``speech_mvn`` / ``speaker_mvn``. A single file has no speaker statistics,
  so ``speaker_mvn`` uses its pooled training statistics (``stats_file``), as
  ``echo-transcribe`` does for an unknown speaker; without them export is refused;
* pre-encoder, encoder, post-encoder. Rotary embeddings that multiply channel pairs by
  complex factors (every ``PairRotary``: standard, learned, mel, axial, ...) hit the
  same missing complex type (``view_as_complex`` / ``torch.polar``), and ``nn.RMSNorm``
  (``norm: rms_norm``) has no ONNX symbolic before opset 23; while exporting, each such
  layer's method is swapped, on the instance only, for the same arithmetic in real
  ops (:func:`exportable_layers`: cos/sin rotation, mean-square normalization) and
  restored afterwards. ``scaled_dot_product_attention`` exports as it is (opset >= 14).
  Pitch-aware rotaries need f0 (WORLD, numpy) and are refused with the reason;
* the CTC projection and ``log_softmax``.

The exporter is torch's TorchScript-based one (``torch.onnx.export(..., dynamo=False)``).
The default dynamo exporter (which also needs ``onnxscript``) stops in ``torch.export``
with ``GuardOnDataDependentSymNode`` on ESPnet's data-dependent checks: ``assert maxlen >=
lengths.max()`` in ``make_pad_mask`` (called by the encoders), ``speech[:, :
speech_lengths.max()]`` in ``ESPnetASRModel._extract_feats``; so it is not used. Every export is checked:
onnxruntime's output on two inputs of different lengths must match PyTorch's within
``atol`` (:func:`parity_atol`; the second length shows a shape baked in at trace time). When ONNX fails
(an error or a mismatch) each part is exported alone to name the ones that fail
(:func:`diagnose_parts`, with the layer from the exporter's scope where it gives
one), and the whole path is saved as TorchScript instead, reporting those parts.

INT8: :func:`quantize_int8` (onnxruntime's dynamic quantization: int8 weights,
activations quantized per call) of the MatMul / Gemm layers (a Whisper frontend's
encoder included); the log-mel, the normalization and convolutions stay float32
(see there why).
:func:`ctc_greedy_text` decodes log-posteriors greedily (best token per frame,
repeats collapsed, blanks dropped) into token ids, tokens and text.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import types
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from echo_plugin.export.real_stft import dft_basis, power_spectrum

DEFAULT_OPSET = 17
PARITY_ATOL = 1e-4
# A Whisper frontend's encoder amplifies float rounding of its log-mel: on the two parity inputs the trained
# FSDD default's PyTorch log-posteriors move by 1.5e-4 and 1.3e-4 when its own log-mel (float32 torch.stft)
# is computed in float64 instead, and the exported graph's differ from PyTorch's by 1.0e-4 and 1.3e-4
# (bench/EXPORT_whisper.md): rounding, not a different computation; 1e-3 leaves room for other inputs
WHISPER_PARITY_ATOL = 1e-3
INPUT_NAMES = ["speech", "speech_lengths"]
OUTPUT_NAMES = ["logp", "logp_lengths"]
DYNAMIC_AXES = {"speech": {1: "samples"}, "logp": {1: "frames"}}
PARTS = ("frontend", "normalize", "preencoder", "encoder", "postencoder", "ctc")
FLOAT_PARTS = ("frontend", "normalize")  # kept float32 by quantize_int8
QUANTIZED_SUBPARTS = ("frontend/whisper",)  # within FLOAT_PARTS, quantized all the same (see quantize_int8)
INT8_OPS = ("MatMul", "Gemm")  # quantized by quantize_int8 (see there)
ONNX_FILE, INT8_FILE, TORCHSCRIPT_FILE = "model.onnx", "model.int8.onnx", "model.ts.pt"
TOKENS_FILE, BPE_FILE, META_FILE = "tokens.txt", "bpe.model", "export.json"
CHECK_SECONDS = (1.0, 1.73)  # lengths of the parity inputs: the first is also the trace input


class ExportError(RuntimeError):
    """A model (or one of its parts / layers, named in the message) that cannot be exported.

    After a failed ONNX export also: ``onnx_error`` (why), ``failed_parts`` (part -> why it fails
    alone) and ``torchscript_error`` (why the TorchScript fallback failed, or None if not tried).
    """

    def __init__(self, message: str, onnx_error: Optional[str] = None, failed_parts: Optional[dict] = None,
                 torchscript_error: Optional[str] = None) -> None:
        super().__init__(message)
        self.onnx_error, self.torchscript_error = onnx_error, torchscript_error
        self.failed_parts = dict(failed_parts or {})


def require_onnx() -> None:
    """ImportError naming the extra when onnx / onnxruntime are missing."""
    for name in ("onnx", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            raise ImportError(f"{name} is not installed: pip install -e .[export] "
                              "(or pip install onnx onnxruntime)") from None


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """ESPnet's import-time prints to stderr; tracer and deprecation warnings off."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    """A trained ESPnet ASR model with what decoding its output needs."""

    model: nn.Module
    token_list: list[str]
    token_type: Optional[str]
    bpemodel: Optional[str]
    fs: int
    config_file: str
    model_file: str


def _frontend_rate(model: nn.Module, config: dict) -> int:
    logmel = getattr(getattr(model, "frontend", None), "logmel", None)
    if logmel is not None and "sr" in getattr(logmel, "mel_options", {}):
        return int(logmel.mel_options["sr"])
    return int((config.get("frontend_conf") or {}).get("fs", 16000))


def load_model(
    archive: Union[str, Path, None] = None,
    *,
    config: Union[str, Path, None] = None,
    model_file: Union[str, Path, None] = None,
    cache_dir: Union[str, Path, None] = None,
) -> LoadedModel:
    """Build a model from a packed archive (ESPnet's packer zip, stage 8) or from config + model file.

    Weights load strictly (:class:`echo_plugin.tasks.asr.EchoASRTask`): a renamed parameter is an
    error naming the key, not a silently random layer. A frontend's feature cache (``cache_mb``) is
    turned off: each file is new to a deployed model, and timings must not reuse features.
    """
    import yaml

    if archive is not None:
        archive = Path(archive)
        if not archive.is_file():
            raise FileNotFoundError(f"no model archive at {archive}")
        from espnet2.main_funcs.pack_funcs import unpack

        target = Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp(prefix="echo_export_"))
        files = unpack(archive, target)
        config, model_file = files["asr_train_config"], files["asr_model_file"]
    if config is None or model_file is None:
        raise ValueError("give a packed archive, or both config and model_file")
    with quiet():
        from echo_plugin.tasks.asr import EchoASRTask

        model, args = EchoASRTask.build_model_from_file(str(config), str(model_file), "cpu")
    model.eval()
    from echo_plugin.asr.audio_output_cache import caches_off

    caches_off(model)  # each file is new to a deployed model
    raw = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    tokens = args.token_list
    if isinstance(tokens, (str, Path)):
        tokens = [line.rstrip("\n") for line in Path(tokens).read_text(encoding="utf-8").splitlines()]
    token_type = getattr(args, "token_type", None)
    bpemodel = getattr(args, "bpemodel", None)
    if token_type != "bpe" or not bpemodel or not Path(bpemodel).is_file():
        bpemodel = None
    return LoadedModel(model, list(tokens), token_type, bpemodel, _frontend_rate(model, raw), str(config),
                       str(model_file))


# --------------------------------------------------------------------------- the graph


class LogMelFrontend(nn.Module):
    """ESPnet's ``DefaultFrontend`` (single channel, no enhancement) in real arithmetic.

    ``torch.stft(center=True)`` reflect-pads ``n_fft // 2`` samples on both sides and
    takes frames every ``hop`` samples, windowed by the window zero-padded to ``n_fft``
    around its centre. Here each frame's DFT is a ``conv1d`` with kernels
    ``w[n] cos(2 pi k n / n_fft)`` and ``-w[n] sin(2 pi k n / n_fft)`` for the
    ``n_fft // 2 + 1`` one-sided bins ``k`` (:mod:`echo_plugin.export.real_stft`);
    then power, the same mel matrix, the clamp
    at 1e-10, the log and the zeroed padding frames as ESPnet's ``LogMel``.
    """

    def __init__(self, frontend: nn.Module) -> None:
        super().__init__()
        stft = getattr(frontend, "stft", None)
        if stft is None:
            raise ExportError("frontend: DefaultFrontend with apply_stft false (STFT input) is not exported")
        enhance = getattr(frontend, "frontend", None)
        if enhance is not None and (getattr(enhance, "use_wpe", False) or getattr(enhance, "use_beamformer", False)):
            raise ExportError("frontend.frontend: WPE / beamforming (multi-channel enhancement) is not exported")
        if not stft.onesided:
            raise ExportError("frontend.stft: a two-sided STFT (onesided false) is not exported")
        self.n_fft, self.hop, self.center = int(stft.n_fft), int(stft.hop_length), bool(stft.center)
        win_length = int(stft.win_length)
        if stft.window is None:
            window = torch.ones(win_length, dtype=torch.float64)
        else:
            window = getattr(torch, f"{stft.window}_window")(win_length, dtype=torch.float64)
        basis = dft_basis(self.n_fft, window, normalized=bool(stft.normalized))
        self.register_buffer("basis", basis, persistent=False)  # (2K, 1, n_fft)
        self.register_buffer("melmat", frontend.logmel.melmat.detach().clone(), persistent=False)  # (K, M)
        self.log_base = frontend.logmel.log_base

    def forward(self, speech: Tensor, speech_lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """speech (B, N), speech_lengths (B,) -> log-mel (B, T, M), frames (B,)."""
        from echo_plugin.espnet_legacy import make_pad_mask

        pad = self.n_fft // 2 if self.center else 0
        power = power_spectrum(speech, self.basis, self.hop, self.center)  # (B, T, K)
        mel = torch.matmul(power, self.melmat).clamp(min=1e-10)
        if self.log_base is None:
            logmel = mel.log()
        elif self.log_base == 2.0:
            logmel = mel.log2()
        elif self.log_base == 10.0:
            logmel = mel.log10()
        else:
            logmel = mel.log() / math.log(self.log_base)
        lengths = torch.div(speech_lengths + 2 * pad - self.n_fft, self.hop, rounding_mode="trunc") + 1
        return logmel.masked_fill(make_pad_mask(lengths, logmel, 1), 0.0), lengths


class CTCHead(nn.Module):
    """ESPnet's ``CTC.log_softmax``: Linear to the vocabulary, then log_softmax."""

    def __init__(self, ctc_lo: nn.Module) -> None:
        super().__init__()
        self.ctc_lo = ctc_lo

    def forward(self, hs: Tensor) -> Tensor:
        return F.log_softmax(self.ctc_lo(hs), dim=-1)


def check_exportable(model: nn.Module) -> None:
    """Refuse, with the reason and the part named, a model whose CTC path cannot be one graph."""
    from echo_plugin.nn.capabilities import ExtractsFeatures, reads_f0

    frontend = getattr(model, "frontend", None)
    if isinstance(frontend, ExtractsFeatures):
        raise ExportError(
            f"frontend: {type(frontend).__name__} (frontend: echo) is not exported: the model runs it through "
            "extract(), whose pitch, harmonic and aperiodic features (and f0) come from WORLD in numpy, outside "
            "any torch graph; export a model with "
            "the default (log-mel) frontend"
        )
    if getattr(model, "pitch", None) is not None:
        raise ExportError("model_conf f0: the model computes f0 with WORLD (numpy), which cannot be in the graph")
    encoder = getattr(model, "encoder", None)
    if encoder is not None and reads_f0(encoder):
        rotaries = [name for name, module in encoder.named_modules() if module is not encoder and reads_f0(module)]
        raise ExportError(f"encoder: pitch-aware rotaries need f0 at run time (layers {', '.join(rotaries)})")
    if encoder is not None and (getattr(encoder, "interctc_use_conditioning", False)
                                or getattr(encoder, "ctc_trim", False)):
        raise ExportError(f"encoder: {type(encoder).__name__} with self-conditioned intermediate CTC is not exported")
    normalize = getattr(model, "normalize", None)
    from echo_plugin.asr.normalize.speaker_mvn import SpeakerMVN

    if isinstance(normalize, SpeakerMVN) and normalize.fallback_mean is None:
        raise ExportError(
            "normalize: speaker_mvn without stats_file: one file has no speaker statistics and the model "
            "holds no pooled training statistics to use instead (set normalize_conf.stats_file)"
        )


class CTCGraph(nn.Module):
    """The exported path, its parts as submodules (their names prefix the ONNX node names)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        check_exportable(model)
        from espnet2.asr.frontend.default import DefaultFrontend

        from echo_plugin.export.whisper_frontend import WhisperFrontendGraph, is_whisper_frontend

        frontend = model.frontend
        if isinstance(frontend, DefaultFrontend):
            self.frontend = LogMelFrontend(frontend)
        elif is_whisper_frontend(frontend):
            self.frontend = WhisperFrontendGraph(frontend)
        else:
            self.frontend = frontend
        self.normalize = model.normalize
        self.preencoder = model.preencoder
        self.encoder = model.encoder
        self.postencoder = model.postencoder
        self.ctc = CTCHead(model.ctc.ctc_lo)

    def parts(self) -> list[str]:
        return [name for name in PARTS if getattr(self, name) is not None]

    def run_part(self, name: str, x: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """One part: (input, lengths) -> (output, lengths)."""
        part = getattr(self, name)
        if name == "ctc":
            return part(x), lengths
        if name == "encoder":
            out, lengths, _ = part(x, lengths)
            return (out[0] if isinstance(out, tuple) else out), lengths
        return part(x, lengths)

    def forward(self, speech: Tensor, speech_lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """speech (B, N) float32, speech_lengths (B,) int64 -> logp (B, T, V), logp_lengths (B,)."""
        x, lengths = speech, speech_lengths
        for name in self.parts():
            x, lengths = self.run_part(name, x, lengths)
        return x, lengths


class PartGraph(nn.Module):
    """One part of a CTCGraph alone, for :func:`diagnose_parts`."""

    def __init__(self, graph: CTCGraph, name: str) -> None:
        super().__init__()
        self.graph, self.name = graph, name

    def forward(self, x: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        return self.graph.run_part(self.name, x, lengths)


def _real_pair_rotate(self: nn.Module, x: Tensor, positions: Tensor, f0: Any = None) -> Tensor:
    """``PairRotary.rotate`` without complex tensors: pair (a, b) by angle phi, radius r ->
    (r (a cos phi - b sin phi), r (a sin phi + b cos phi)), computed in float32."""
    angles = self.angles(positions, f0)
    radius = self.radius(positions, f0)
    cos, sin = angles.cos(), angles.sin()
    if radius is not None:
        radius = radius.to(angles.dtype)
        cos, sin = radius * cos, radius * sin
    if cos.dim() != 2:  # per utterance (B, T, F): broadcast over heads
        cos, sin = cos.unsqueeze(-3), sin.unsqueeze(-3)
    n_pairs = cos.shape[-1]
    if n_pairs == 0:
        return x
    pairs = x[..., : 2 * n_pairs].float().unflatten(-1, (n_pairs, 2))
    a, b = pairs[..., 0], pairs[..., 1]
    cos, sin = cos.float(), sin.float()
    out = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2).to(x.dtype)
    return torch.cat([out, x[..., 2 * n_pairs:]], dim=-1)


def _rms_norm(self: nn.Module, x: Tensor) -> Tensor:
    """``nn.RMSNorm.forward`` in ops opset 17 has (``aten::rms_norm`` has no ONNX symbolic before opset 23)."""
    dims = tuple(range(-len(self.normalized_shape), 0))
    eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
    y = x * torch.rsqrt(x.pow(2).mean(dim=dims, keepdim=True) + eps)
    return y if self.weight is None else y * self.weight


def _positional_encoding(self: nn.Module, x: Tensor) -> Tensor:
    """ESPnet's ``PositionalEncoding.forward`` with the sinusoid table computed for x's frames
    (ESPnet's formula, float32) instead of sliced from its precomputed 5000-frame table, which
    would sit in the graph as a constant (2.9 MB at width 144) and cap the input length."""
    position = torch.arange(x.size(1), dtype=torch.float32, device=x.device).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, self.d_model, 2, dtype=torch.float32, device=x.device)
                         * -(math.log(10000.0) / self.d_model))
    angle = position * div_term
    pe = torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2).unsqueeze(0)
    return self.dropout(x * self.xscale + pe.to(x.dtype))


@contextlib.contextmanager
def exportable_layers(module: nn.Module) -> Iterator[list[str]]:
    """Swap, on the instances only, the methods of layers the exporter cannot take for equivalent
    real-valued ones: ``rotate`` of every complex-multiplication rotary (a ``PairRotary`` that keeps
    its ``rotate`` and ``freqs``) for :func:`_real_pair_rotate`, ``forward`` of ``nn.RMSNorm`` for
    :func:`_rms_norm`; and ``forward`` of ESPnet's absolute ``PositionalEncoding`` for
    :func:`_positional_encoding` (not needed to export, but the graph gets smaller and takes any
    length). Yields the swapped layers' names; restores them on exit."""
    from echo_plugin.espnet_legacy import PositionalEncoding
    from echo_plugin.nn.rotary.base import PairRotary

    swapped = []
    for name, sub in module.named_modules():
        kind = type(sub)
        if isinstance(sub, PairRotary) and kind.rotate is PairRotary.rotate and kind.freqs is PairRotary.freqs:
            sub.rotate = types.MethodType(_real_pair_rotate, sub)
            swapped.append((name, sub, "rotate"))
        elif kind is nn.RMSNorm:
            sub.forward = types.MethodType(_rms_norm, sub)
            swapped.append((name, sub, "forward"))
        elif kind is PositionalEncoding and not sub.reverse and sub.d_model % 2 == 0:
            sub.forward = types.MethodType(_positional_encoding, sub)
            swapped.append((name, sub, "forward"))
    try:
        yield [name for name, _, _ in swapped]
    finally:
        for _, sub, method in swapped:
            delattr(sub, method)


# --------------------------------------------------------------------------- export


@dataclass
class ExportReport:
    """What :func:`export_ctc` wrote and how it checked."""

    format: str  # "onnx" or "torchscript"
    path: str
    exporter: str
    opset: Optional[int]
    atol: float = PARITY_ATOL  # the parity tolerance checked
    parity_max_abs: dict[str, float] = field(default_factory=dict)  # "<samples> samples" -> max |diff| of logp
    greedy_identical: bool = True
    failed_parts: dict[str, str] = field(default_factory=dict)  # part -> why ONNX failed for it
    swapped_layers: list[str] = field(default_factory=list)  # see exportable_layers
    onnx_error: Optional[str] = None


def reference_logp(model: nn.Module, speech: Tensor, lengths: Tensor) -> Tensor:
    """PyTorch's own CTC log-posteriors: ESPnet's ``encode`` then ``ctc.log_softmax`` (B, T, V)."""
    with torch.no_grad():
        enc, _ = model.encode(speech, lengths)
        if isinstance(enc, tuple):
            enc = enc[0]
        return model.ctc.log_softmax(enc)


def check_inputs(fs: int, seconds: Sequence[float] = CHECK_SECONDS, seed: int = 0) -> list[Tensor]:
    """Parity inputs: Gaussian noise (1, N) at the model's rate, one per length."""
    gen = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(1, max(1, round(s * fs)), generator=gen) for s in seconds]


def ort_session(path: Union[str, Path, bytes], threads: int = 1):
    """An onnxruntime CPU session with ``threads`` intra-op threads and sequential execution."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    source = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_session(session, speech: np.ndarray, lengths: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Run a two-input, two-output graph; ``speech`` (1, N) float32 (a (N,) array gets the batch axis)."""
    speech = np.asarray(speech, dtype=np.float32)
    if speech.ndim == 1:
        speech = speech[None]
    if lengths is None:
        lengths = np.array([speech.shape[1]], dtype=np.int64)
    names = [i.name for i in session.get_inputs()]
    out = session.run(None, {names[0]: speech, names[1]: np.asarray(lengths, dtype=np.int64)})
    return out[0], out[1]


def _error_layer(message: str, graph: Optional[nn.Module] = None) -> Optional[str]:
    """The layer an error names: the ``scope:`` of a TorchScript-exporter error
    (``.../EchoEncoder::encoder/...Stft::stft``) or the node of an onnxruntime error
    (``Name:'/encoder/blocks.0/self_attn/Reshape_9'``), as ``encoder.blocks.0.self_attn (Class)``."""
    scope = re.search(r"scope: (\S+)", message)
    node = re.search(r"Name:'(/[^']+)'", message)
    if scope:
        names = [seg.partition("::")[2] for seg in scope.group(1).split("/")[1:]]
        path = ".".join(n for n in names if n)
    elif node:
        path = ".".join(node.group(1).strip("/").split("/")[:-1])
    else:
        return None
    if not path:
        return None
    if graph is not None:
        for prefix in ("", "graph."):  # PartGraph holds the CTCGraph as .graph
            with contextlib.suppress(AttributeError):
                return f"{path} ({type(graph.get_submodule(prefix + path)).__name__})"
    return path


BOILERPLATE = (" Please feel free to request support", "  [Caused by the value", " Status Message: /onnxruntime_src/")


def _describe(error: BaseException, graph: Optional[nn.Module] = None, limit: int = 200) -> str:
    """One line: the error's type and first line (exporter boilerplate cut, at most ``limit``
    characters), and the layer it names."""
    message = str(error).strip()
    lines = message.splitlines()
    first = lines[0] if lines else ""
    where = ""
    if first.startswith("The following operation failed in the TorchScript interpreter"):
        first = re.sub(r"^\w+Error: ", "", lines[-1])  # the error itself; above it the traced frames, innermost first
        frames = [m.group(1) for m in map(re.compile(r"^(\S+\.py\(\d+\)): \w+$").match, lines) if m]
        own = [f for f in frames if "site-packages/torch/" not in f]
        if own:
            where = " (at " + re.sub(r"^.*/(echo_plugin|espnet2?)/", r"\1/", own[0]) + ")"
    for cut in BOILERPLATE:
        first = first.split(cut)[0]
    if len(first) > limit:
        first = first[:limit] + " ..."
    layer = _error_layer(message, graph)
    return f"{type(error).__name__}: {first.strip()}{where}" + (f" [layer {layer}]" if layer else "")


@contextlib.contextmanager
def _native_output_dropped() -> Iterator[None]:
    """File descriptors 1 and 2 to /dev/null: after a failed export torch's C++ ONNX log prints the
    whole TorchScript graph to stdout (its switch, ``setup_onnx_logging``, is left on in torch 2.12)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


def _onnx_export(module: nn.Module, args: Tuple[Tensor, ...], target: Any, opset: int,
                 input_names: list[str], output_names: list[str], dynamic_axes: dict) -> None:
    with quiet(), torch.no_grad(), _native_output_dropped():
        torch.onnx.export(module, args, target, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False, do_constant_folding=True)


def diagnose_parts(graph: CTCGraph, inputs: Sequence[Tensor], opset: int = DEFAULT_OPSET,
                   atol: float = PARITY_ATOL) -> dict[str, str]:
    """Export each part alone (its PyTorch input from the parts before it) and check it on every input:
    part -> why it fails (an exporter error naming the layer, or the size of the mismatch)."""
    failed: dict[str, str] = {}
    with torch.no_grad():
        states = [(x, torch.tensor([x.shape[1]])) for x in inputs]
        for name in graph.parts():
            part = PartGraph(graph, name).eval()
            outs = [graph.run_part(name, x, lens) for x, lens in states]
            axes = {"x": {1: "time"}, "y": {1: "time"}}
            try:
                buffer = io.BytesIO()
                with exportable_layers(part):
                    _onnx_export(part, states[0], buffer, opset, ["x", "lengths"], ["y", "y_lengths"], axes)
                session = ort_session(buffer.getvalue())
                for (x, lens), (ref, _) in zip(states, outs):
                    got, _ = run_session(session, x.numpy(), lens.numpy())
                    if got.shape != tuple(ref.shape):
                        raise ExportError(f"output shape {got.shape} != PyTorch's {tuple(ref.shape)} "
                                          f"for input {tuple(x.shape)} (a shape baked in at trace time)")
                    diff = float(np.abs(got - ref.numpy()).max())
                    if not diff <= atol:
                        raise ExportError(f"output differs from PyTorch's by {diff:.3g} for input {tuple(x.shape)}")
            except Exception as error:  # noqa: BLE001 - every failure is reported, part by part
                failed[name] = f"{type(getattr(graph, name)).__name__}: {_describe(error, part)}"
            states = outs
    return failed


def _compare(logp: np.ndarray, ref: Tensor) -> Tuple[float, bool]:
    if logp.shape != tuple(ref.shape):
        return math.inf, False
    diff = float(np.abs(logp - ref.numpy()).max())
    same = ctc_greedy_ids(logp) == ctc_greedy_ids(ref.numpy())
    return diff, same


def parity_atol(model: nn.Module) -> float:
    """The default parity tolerance on log-posteriors: ``WHISPER_PARITY_ATOL`` for a Whisper frontend
    (its encoder amplifies float rounding, see there), else ``PARITY_ATOL``."""
    from echo_plugin.export.whisper_frontend import is_whisper_frontend

    return WHISPER_PARITY_ATOL if is_whisper_frontend(getattr(model, "frontend", None)) else PARITY_ATOL


def export_ctc(model: nn.Module, path: Union[str, Path], fs: int, *, opset: int = DEFAULT_OPSET,
               atol: Optional[float] = None, check_seconds: Sequence[float] = CHECK_SECONDS,
               torchscript_fallback: bool = True) -> ExportReport:
    """Export ``model``'s CTC path to ONNX at ``path`` and check it (see the module docstring);
    ``atol`` defaults to :func:`parity_atol`.

    On an ONNX failure the parts that fail are named (``ExportReport.failed_parts``) and, with
    ``torchscript_fallback``, the path is traced to TorchScript beside it (``model.ts.pt``);
    otherwise, or when TorchScript fails too, :class:`ExportError` says why. A frontend's feature
    cache is off meanwhile (PyTorch's reference is computed, not looked up).
    """
    require_onnx()
    from echo_plugin.asr.audio_output_cache import caches_turned_off

    atol = parity_atol(model) if atol is None else atol
    with caches_turned_off(model):
        return _export_ctc(model, path, fs, opset, atol, check_seconds, torchscript_fallback)


def _export_ctc(model: nn.Module, path: Union[str, Path], fs: int, opset: int, atol: float,
                check_seconds: Sequence[float], torchscript_fallback: bool) -> ExportReport:
    model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = CTCGraph(model).eval()
    inputs = check_inputs(fs, check_seconds)
    refs = [reference_logp(model, x, torch.tensor([x.shape[1]])) for x in inputs]
    example = (inputs[0], torch.tensor([inputs[0].shape[1]]))
    report = ExportReport("onnx", str(path), "torch.onnx.export (TorchScript-based, dynamo=False)", opset, atol)
    try:
        with exportable_layers(graph) as swapped:
            report.swapped_layers = swapped
            _onnx_export(graph, example, str(path), opset, INPUT_NAMES, OUTPUT_NAMES, DYNAMIC_AXES)
        session = ort_session(path)
        for x, ref in zip(inputs, refs):
            logp, _ = run_session(session, x.numpy())
            diff, same = _compare(logp, ref)
            report.parity_max_abs[f"{x.shape[1]} samples"] = diff
            report.greedy_identical &= same
            if not diff <= atol:
                raise ExportError(f"ONNX log-posteriors differ from PyTorch's by {diff:.3g} (> {atol:g}) "
                                  f"on {x.shape[1]} samples")
        return report
    except Exception as error:  # noqa: BLE001 - diagnosed below
        report.onnx_error = _describe(error, graph)
        path.unlink(missing_ok=True)
    report.failed_parts = diagnose_parts(graph, inputs, opset, atol)
    parts = "; ".join(f"{k}: {v}" for k, v in report.failed_parts.items()) or "no single part fails alone"
    if not torchscript_fallback:
        raise ExportError(f"ONNX export failed ({report.onnx_error}); parts: {parts}", report.onnx_error,
                          report.failed_parts)
    ts_path = path.with_name(TORCHSCRIPT_FILE)
    try:
        with exportable_layers(graph), quiet(), torch.no_grad():
            traced = torch.jit.trace(graph, example, check_trace=False)
        report.format, report.path, report.exporter, report.opset = "torchscript", str(ts_path), "torch.jit.trace", None
        report.parity_max_abs, report.greedy_identical = {}, True
        for x, ref in zip(inputs, refs):
            try:
                with torch.no_grad():
                    logp, _ = traced(x, torch.tensor([x.shape[1]]))
            except Exception as error:  # noqa: BLE001
                raise ExportError(f"the traced graph fails on {x.shape[1]} samples (traced on {example[0].shape[1]}: "
                                  f"a shape baked in at trace time): {_describe(error, graph)}") from error
            diff, same = _compare(logp.numpy(), ref)
            report.parity_max_abs[f"{x.shape[1]} samples"] = diff
            report.greedy_identical &= same
            if not diff <= atol:
                raise ExportError(f"TorchScript log-posteriors differ from PyTorch's by {diff:.3g} on {x.shape[1]} "
                                  "samples")
        traced.save(str(ts_path))
    except Exception as error:  # noqa: BLE001
        why = str(error) if isinstance(error, ExportError) else _describe(error, graph)
        raise ExportError(f"ONNX export failed ({report.onnx_error}; parts: {parts}) and TorchScript failed too: "
                          f"{why}", report.onnx_error, report.failed_parts, why) from error
    logging.getLogger(__name__).warning("ONNX export failed (%s); parts that fail alone: %s. Saved TorchScript "
                                        "instead: %s", report.onnx_error, parts, ts_path)
    return report


def quantize_int8(onnx_path: Union[str, Path], out_path: Union[str, Path], op_types: Sequence[str] = INT8_OPS,
                  float_parts: Sequence[str] = FLOAT_PARTS, per_channel: bool = False,
                  quantized_subparts: Sequence[str] = QUANTIZED_SUBPARTS) -> Path:
    """onnxruntime dynamic quantization: int8 weights of the ``op_types`` layers, activations quantized
    per call (uint8), except the nodes of ``float_parts`` that are not in ``quantized_subparts``.

    Defaults: MatMul / Gemm only (every Linear: attention projections, feed-forward, CTC); the
    frontend (DFT and mel matrix: log-mel features are sensitive to rounding) and normalization stay
    float32, and so do convolutions (the conv2d subsampling): onnxruntime's ``ConvInteger`` ran
    about 2x slower than the float convolution on the 2-core AMD EPYC of bench/EXPORT.md,
    which made the whole INT8 graph slower than float32; ``op_types=("MatMul", "Gemm", "Conv")``
    quantizes them too (smaller file). A Whisper frontend's encoder (``frontend/whisper``: a
    transformer like the encoder, most of the graph's weights and time) is quantized as the encoder
    is; its resampling and log-mel stay float32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(onnx_path))
    prefixes = tuple(f"/{part}/" for part in float_parts)
    kept = tuple(f"/{part}/" for part in quantized_subparts)
    excluded = [node.name for node in graph.graph.node if node.name.startswith(prefixes)
                and not node.name.startswith(kept)]
    out_path = Path(out_path)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "Please consider to run pre-processing": its symbolic shape inference fails here
    try:
        with quiet():
            quantize_dynamic(str(onnx_path), str(out_path), op_types_to_quantize=list(op_types),
                             weight_type=QuantType.QInt8, per_channel=per_channel, nodes_to_exclude=excluded)
    finally:
        root.setLevel(level)
    return out_path


# --------------------------------------------------------------------------- greedy decoding


@dataclass
class GreedyResult:
    """Greedy CTC output: the text, the token ids and their tokens."""

    text: str
    token_ids: list[int]
    tokens: list[str]


def ctc_greedy_ids(logp: Union[np.ndarray, Tensor], blank_id: int = 0) -> list[int]:
    """Best token per frame of ``logp`` (T, V) or (1, T, V), repeats collapsed, blanks dropped."""
    scores = logp.detach().cpu().numpy() if isinstance(logp, Tensor) else np.asarray(logp)
    if scores.ndim == 3:
        if scores.shape[0] != 1:
            raise ValueError(f"one utterance at a time: logp has batch size {scores.shape[0]}")
        scores = scores[0]
    best = scores.argmax(axis=-1)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(t) for t in best[keep] if t != blank_id]


def ctc_greedy_text(logp: Union[np.ndarray, Tensor], token_list: Sequence[str], bpemodel: Union[str, Path, None] = None,
                    token_type: Optional[str] = None, blank_id: Optional[int] = None) -> GreedyResult:
    """Greedy CTC decoding of ``logp`` mapped to text with the model's token list (and sentencepiece model).

    ``<blank>`` (``blank_id``, default its index in the list, else 0) and ``<sos/eos>`` are dropped as
    ESPnet's Speech2Text drops them. Text: sentencepiece pieces decoded with ``bpemodel``; otherwise
    by ``token_type`` (default ``bpe`` with a bpemodel, else ``char``): ``char`` joins tokens with
    ``<space>`` as a blank, ``word`` / ``phn`` join them with spaces.
    """
    if blank_id is None:
        blank_id = token_list.index("<blank>") if "<blank>" in token_list else 0
    ids = ctc_greedy_ids(logp, blank_id)
    special = {i for i, t in enumerate(token_list) if t == "<sos/eos>"}
    ids = [i for i in ids if i not in special]
    tokens = [token_list[i] for i in ids]
    token_type = token_type or ("bpe" if bpemodel else "char")
    if bpemodel is not None:
        import sentencepiece as spm

        text = spm.SentencePieceProcessor(model_file=str(bpemodel)).decode_pieces(tokens)
    elif token_type == "char":
        text = "".join(" " if t == "<space>" else t for t in tokens)
    else:
        text = " ".join(tokens)
    return GreedyResult(text, ids, tokens)


# --------------------------------------------------------------------------- deployment bundle


def export_bundle(archive: Union[str, Path, None], out_dir: Union[str, Path], *, config: Union[str, Path, None] = None,
                  model_file: Union[str, Path, None] = None, int8: bool = True, opset: int = DEFAULT_OPSET,
                  atol: Optional[float] = None, torchscript_fallback: bool = True) -> dict[str, Any]:
    """Export a packed model (or config + model file) into ``out_dir``: ``model.onnx`` (or
    ``model.ts.pt``), ``model.int8.onnx`` with ``int8``, ``tokens.txt``, ``bpe.model`` when the model
    has one, and ``export.json`` (rate, token type, the export report). Returns export.json's content."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="echo_export_") as tmp:
        loaded = load_model(archive, config=config, model_file=model_file, cache_dir=tmp)
        report = export_ctc(loaded.model, out_dir / ONNX_FILE, loaded.fs, opset=opset, atol=atol,
                            torchscript_fallback=torchscript_fallback)
        (out_dir / TOKENS_FILE).write_text("\n".join(loaded.token_list) + "\n", encoding="utf-8")
        if loaded.bpemodel is not None:
            shutil.copyfile(loaded.bpemodel, out_dir / BPE_FILE)
    meta: dict[str, Any] = {
        "fs": loaded.fs,
        "token_type": loaded.token_type,
        "tokens": TOKENS_FILE,
        "bpemodel": BPE_FILE if loaded.bpemodel is not None else None,
        "model": Path(report.path).name,
        "inputs": INPUT_NAMES,
        "outputs": OUTPUT_NAMES,
        "source": str(archive) if archive is not None else {"config": str(config), "model_file": str(model_file)},
        "report": asdict(report),
    }
    if int8 and report.format == "onnx":
        quantize_int8(out_dir / ONNX_FILE, out_dir / INT8_FILE)
        meta["int8_model"] = INT8_FILE
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


class OnnxCTC:
    """An exported bundle (:func:`export_bundle`) ready to decode greedily with onnxruntime."""

    def __init__(self, bundle: Union[str, Path], int8: bool = False, threads: int = 1) -> None:
        self.dir = Path(bundle)
        self.meta = json.loads((self.dir / META_FILE).read_text(encoding="utf-8"))
        name = self.meta.get("int8_model") if int8 else self.meta["model"]
        if name is None or not name.endswith(".onnx"):
            raise ExportError(f"{self.dir}: no {'INT8 ' if int8 else ''}ONNX model in this bundle (model: {name})")
        self.session = ort_session(self.dir / name, threads)
        self.fs = int(self.meta["fs"])
        self.token_list = (self.dir / self.meta["tokens"]).read_text(encoding="utf-8").splitlines()
        self.bpemodel = self.dir / self.meta["bpemodel"] if self.meta.get("bpemodel") else None

    def log_posteriors(self, samples: np.ndarray) -> np.ndarray:
        """samples (N,) float at the model's rate -> logp (T, V)."""
        logp, _ = run_session(self.session, samples)
        return logp[0]

    def transcribe(self, audio: Union[str, Path, np.ndarray]) -> GreedyResult:
        """A file path (resampled to the model's rate) or samples (N,) at the model's rate -> greedy result."""
        if isinstance(audio, (str, Path)):
            from echo_plugin.inference.audio import read_audio

            audio = read_audio(audio, self.fs)
        return ctc_greedy_text(self.log_posteriors(audio), self.token_list, self.bpemodel, self.meta.get("token_type"))
