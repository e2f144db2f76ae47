"""The CTC path exported to ONNX, float32 and INT8, against PyTorch: size on disk, speed, agreement.

    OMP_NUM_THREADS=1 python -m bench.export_int8 --out bench/EXPORT.md
    OMP_NUM_THREADS=1 python -m bench.export_int8 --model exp/asr_train_asr_echo/train_asr_echo.zip \\
        --wav_scp data/test_isolated/wav.scp --out bench/EXPORT_trained.md   # references: text beside wav.scp
    OMP_NUM_THREADS=1 python -m bench.export_int8 --no_coverage --repeats 3 --limit 100 \\
        --model folds/test-lucas/exp/asr_train_asr_echo_whisper_frontend_nosp_seed0/...zip \\
        --wav_scp folds/test-lucas/data/dev/wav.scp --out bench/EXPORT_whisper.md   # the Whisper default

The model: a packed archive (``--model``, stage 8's zip) decoding the utterances of
``--wav_scp`` (the first ``--limit`` of them); else the filterbank base config (``--config``, an overlay is merged) with
random weights, as the recipe builds it (8 kHz, BPE 30, ``speaker_mvn`` with pooled
statistics of the training speakers' recordings, used as for a file of an unknown
speaker), decoding 50 real FSDD recordings: the recipe's test speaker (lucas), takes
0-4 of each digit, from ``--fsdd_root`` (default ``../shared/data/fsdd`` beside the
repository, as the recipe's ``local/data.sh``).

Three runs of the same CTC path, one utterance at a time, greedy CTC decoding:

* PyTorch float32: ESPnet's ``encode`` + ``ctc.log_softmax`` of the model object, in this process;
* ONNX float32: ``echo_plugin.export.onnx_ctc.export_ctc`` run by onnxruntime;
* ONNX INT8: that graph through ``quantize_int8`` (onnxruntime dynamic quantization: int8 weights,
  activations quantized per call) as exported by default: MatMul / Gemm layers only (every Linear),
  the log-mel frontend, normalization and convolutions float32;
* ONNX INT8 with the convolutions (the conv2d subsampling) quantized too, for comparison;
* with a Whisper frontend, ONNX INT8 with the Whisper encoder left float32 (only the Echo encoder
  and CTC quantized), to tell which part INT8's disagreement with float32 comes from.

Measured:

* size on disk: the PyTorch weights file (whole model: the attention decoder too, which the
  CTC path does not run) and the state dict of the CTC path's parts alone; the two ONNX files;
* RTF = decode seconds / audio seconds over all utterances: forward + greedy decoding, audio
  already in memory, models loaded and each run once before timing; torch and onnxruntime
  on one thread (``torch.set_num_threads(1)``, ``intra_op_num_threads=1``; run with
  ``OMP_NUM_THREADS=1``); the runs alternate per utterance (other load on the machine slows all
  of them alike), the median of ``--repeats`` passes; the load average is reported;
* agreement with PyTorch's greedy output: token error rate (edit distance of the token id
  sequences / PyTorch's tokens), utterances with identical output, frames with the same best
  token, the largest log-posterior difference; and WER against the references, only for a
  trained model (a random model's words mean nothing).

``--coverage`` (on by default, ``--no_coverage`` to skip) also exports every FSDD config of
``--coverage_glob`` at random weights and lists which export to ONNX, which only to
TorchScript, which not at all, and why.

When ``--out`` exists, whatever follows its line ``HAND_WRITTEN`` (a reading of the numbers,
written by hand) is kept below the regenerated report.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "egs/fsdd/asr1/conf/tuning/train_asr_echo.yaml"
DEFAULT_FSDD = REPO.parent / "shared/data/fsdd"
FS = 8000
NBPE = 30
INT8 = "ONNX INT8 (default: MatMul)"
INT8_CONV = "ONNX INT8, convolutions too"
INT8_WHISPER_FLOAT = "ONNX INT8, Whisper encoder float32"
HAND_WRITTEN = "<!-- Written by hand below this line; kept when the report above is regenerated. -->"


@dataclass
class Utterance:
    utt: str
    samples: np.ndarray
    text: str | None = None
    fs: int = FS

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.fs


@dataclass
class Run:
    """One way of running the CTC path, and what it gave."""

    name: str
    size_bytes: int
    times: list[list[float]] = field(default_factory=list)  # per pass, per utterance
    ids: list[list[int]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    logp: list[np.ndarray] = field(default_factory=list)


def edit_distance(a: list, b: list) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def git_state() -> str:
    """``commit <hash>``, with ``+ uncommitted changes`` when the working tree differs from it."""
    import subprocess

    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"commit {head}" + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " / ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "unknown"


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


# --------------------------------------------------------------------------- data


def fsdd_utterances(root: Path, speaker: str = "lucas", takes: int = 5) -> list[Utterance]:
    """``takes`` recordings of each digit by ``speaker`` (10 x takes), with the digit word as reference."""
    from echo_plugin.data.fsdd import DIGIT_WORDS
    from echo_plugin.inference.audio import read_audio

    out = []
    for take in range(takes):
        for digit in range(10):
            path = root / "recordings" / f"{digit}_{speaker}_{take}.wav"
            out.append(Utterance(path.stem, read_audio(path, FS), DIGIT_WORDS[digit]))
    return out


def scp_utterances(wav_scp: Path, text: Path | None, fs: int, limit: int | None = None) -> list[Utterance]:
    """The utterances of a Kaldi ``wav.scp`` (the first ``limit``) read at ``fs``, references from ``text``."""
    from echo_plugin.inference.audio import read_audio

    refs = {}
    if text is not None and text.is_file():
        for line in text.read_text(encoding="utf-8").splitlines():
            utt, _, words = line.strip().partition(" ")
            refs[utt] = words.strip()
    out = []
    for line in wav_scp.read_text(encoding="utf-8").splitlines():
        utt, _, path = line.strip().partition(" ")
        if utt:
            out.append(Utterance(utt, read_audio(path.strip(), fs, utt_id=utt), refs.get(utt), fs))
        if limit is not None and len(out) >= limit:
            break
    return out


# --------------------------------------------------------------------------- the random model


def digit_bpe(workdir: Path) -> tuple[Path, list[str]]:
    """A BPE-30 sentencepiece model of digit-word sentences and ESPnet's token list for it
    (the recipe's ``--token_type bpe --nbpe 30`` on FSDD text)."""
    import sentencepiece as spm

    from echo_plugin.data.fsdd import DIGIT_WORDS

    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(DIGIT_WORDS, size=int(rng.integers(1, 8)))) for _ in range(2000)]
    prefix = workdir / "bpe"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_prefix=str(prefix), vocab_size=NBPE,
                                   model_type="bpe", character_coverage=1.0, hard_vocab_limit=False,
                                   minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=f"{prefix}.model")
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    tokens = ["<blank>", "<unk>", *[p for p in pieces if p not in ("<unk>", "<s>", "</s>")], "<sos/eos>"]
    return Path(f"{prefix}.model"), tokens


def pooled_stats(config: dict, root: Path, workdir: Path, speakers=("george", "jackson", "yweweler")) -> Path:
    """speaker_mvn's ``stats_file``: pooled speech-frame statistics of the training speakers' recordings."""
    import soundfile as sf

    from echo_plugin.asr.normalize.speech_mvn import DEFAULT_VAD_RANGE
    from echo_plugin.recipe.speaker_stats import accumulate, build_frontend

    paths = sorted(p for s in speakers for p in (root / "recordings").glob(f"*_{s}_*.wav"))
    utts = ((p.stem, p.stem.split("_")[1], sf.read(p, dtype="float32")[0]) for p in paths)
    stats = accumulate(build_frontend(config, FS), utts, DEFAULT_VAD_RANGE).pooled
    out = workdir / "pooled_stats.npz"
    np.savez(out, count=np.array(stats.count), sum=stats.total, sum_square=stats.total_square)
    return out


def random_model(config_file: Path, root: Path, workdir: Path, seed: int = 0):
    """(LoadedModel, path of the whole model's weights) for ``config_file`` with random weights."""
    import echo_plugin
    from echo_plugin.export.onnx_ctc import LoadedModel, quiet
    from echo_plugin.recipe.overlay import espnet_config, load_config

    with quiet():
        echo_plugin.register()
        from espnet2.tasks.asr import ASRTask

        bpemodel, tokens = digit_bpe(workdir)
        token_file = workdir / "tokens.txt"
        token_file.write_text("\n".join(tokens) + "\n")
        stats = pooled_stats(load_config(config_file), root, workdir)
        args = ASRTask.get_parser().parse_args([
            "--config", str(espnet_config(config_file, workdir)), "--token_list", str(token_file),
            "--token_type", "bpe", "--bpemodel", str(bpemodel), "--frontend_conf", f"fs={FS}",
            "--normalize", "speaker_mvn", "--normalize_conf", f"stats_file={stats}",
        ])
        torch.manual_seed(seed)
        model = ASRTask.build_model(args).eval()
    weights = workdir / "model.pth"
    torch.save(model.state_dict(), weights)
    return LoadedModel(model, tokens, "bpe", str(bpemodel), FS, str(config_file), str(weights)), weights


# --------------------------------------------------------------------------- measuring


def ctc_path_bytes(model: torch.nn.Module, workdir: Path) -> int:
    """Bytes of a torch.save'd state dict of the CTC path's parts (no attention decoder)."""
    parts = ("frontend", "normalize", "preencoder", "encoder", "postencoder", "ctc")
    state = {k: v for k, v in model.state_dict().items() if k.split(".")[0] in parts}
    path = workdir / "ctc_path.pth"
    torch.save(state, path)
    return path.stat().st_size


def measure(loaded, weights: Path, utts: list[Utterance], workdir: Path, repeats: int) -> tuple[list[Run], dict]:
    from echo_plugin.export.onnx_ctc import (
        ctc_greedy_ids,
        ctc_greedy_text,
        export_ctc,
        ort_session,
        quantize_int8,
        reference_logp,
        run_session,
    )
    from echo_plugin.export.whisper_frontend import is_whisper_frontend

    model = loaded.model.eval()
    onnx_path, int8_path = workdir / "model.onnx", workdir / "model.int8.onnx"
    started = time.perf_counter()
    report = export_ctc(model, onnx_path, loaded.fs, torchscript_fallback=False)
    export_seconds = time.perf_counter() - started
    conv_path = workdir / "model.int8conv.onnx"
    quantize_int8(onnx_path, int8_path)
    quantize_int8(onnx_path, conv_path, op_types=("MatMul", "Gemm", "Conv"))
    paths = {"onnx": onnx_path, "int8": int8_path, "int8conv": conv_path}
    if is_whisper_frontend(model.frontend):  # where INT8's disagreement comes from: Whisper's encoder or the rest
        paths["int8whisperfloat"] = quantize_int8(onnx_path, workdir / "model.int8wf.onnx", quantized_subparts=())
    sessions = {name: ort_session(path, threads=1) for name, path in paths.items()}

    def torch_logp(x: np.ndarray) -> np.ndarray:
        speech = torch.from_numpy(x)[None]
        return reference_logp(model, speech, torch.tensor([speech.shape[1]]))[0].numpy()

    def onnx_logp(name: str):
        return lambda x: run_session(sessions[name], x)[0][0]

    runners = {"PyTorch float32": torch_logp, "ONNX float32": onnx_logp("onnx"), INT8: onnx_logp("int8"),
               INT8_CONV: onnx_logp("int8conv")}
    runs = [Run("PyTorch float32", weights.stat().st_size), Run("ONNX float32", onnx_path.stat().st_size),
            Run(INT8, int8_path.stat().st_size), Run(INT8_CONV, conv_path.stat().st_size)]
    if "int8whisperfloat" in paths:
        runners[INT8_WHISPER_FLOAT] = onnx_logp("int8whisperfloat")
        runs.append(Run(INT8_WHISPER_FLOAT, paths["int8whisperfloat"].stat().st_size))
    for fn in runners.values():  # warm-up: first-call allocations are not decoding
        ctc_greedy_ids(fn(utts[0].samples))
    for number in range(repeats):
        for run in runs:
            run.times.append([])
        for utt in utts:
            for run in runs:
                start = time.perf_counter()
                logp = runners[run.name](utt.samples)
                ids = ctc_greedy_ids(logp)
                run.times[-1].append(time.perf_counter() - start)
                if number == 0:
                    run.ids.append(ids)
                    run.logp.append(logp)
                    run.texts.append(ctc_greedy_text(logp, loaded.token_list, loaded.bpemodel, loaded.token_type).text)
    kinds = sorted({type(model.get_submodule(n)).__name__ for n in report.swapped_layers if _has(model, n)})
    extra = {"export_seconds": export_seconds, "report": report, "ctc_path_bytes": ctc_path_bytes(model, workdir),
             "swapped_kinds": kinds, "frontend": frontend_line(model, loaded.fs),
             "rounding": logmel_rounding(model, loaded.fs)}
    return runs, extra


def _float64_log_mel(self: torch.nn.Module, audio: torch.Tensor, ilens: torch.Tensor | None = None):
    """ESPnet's ``WhisperFrontend.log_mel_spectrogram`` computed in float64, returned in float32."""
    x = audio.double()
    window = torch.hann_window(self.win_length, dtype=torch.float64)
    power = torch.stft(x, self.n_fft, self.hop_length, window=window, return_complex=True)[..., :-1].abs() ** 2
    log_spec = (self.mel_filters(x.device, self.n_mels).double() @ power).clamp(min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.flatten(1).max(dim=-1).values[:, None, None] - 8.0)
    return ((log_spec + 4.0) / 4.0).float(), None if ilens is None else ilens // self.hop_length


def logmel_rounding(model: torch.nn.Module, fs: int) -> dict[str, float] | None:
    """For a Whisper frontend: how far PyTorch's own log-posteriors move on the export's parity inputs
    when its log-mel is computed in float64 instead of float32 (``torch.stft``): the scale of the
    differences any float32 reimplementation of the log-mel brings (input -> max abs difference)."""
    import types

    from echo_plugin.asr.audio_output_cache import caches_turned_off
    from echo_plugin.export.onnx_ctc import check_inputs, reference_logp
    from echo_plugin.export.whisper_frontend import is_whisper_frontend

    frontend = model.frontend
    if not is_whisper_frontend(frontend):
        return None
    out = {}
    with caches_turned_off(model):
        for x in check_inputs(fs):
            lengths = torch.tensor([x.shape[1]])
            ref = reference_logp(model, x, lengths)
            frontend.log_mel_spectrogram = types.MethodType(_float64_log_mel, frontend)
            try:
                exact = reference_logp(model, x, lengths)
            finally:
                del frontend.log_mel_spectrogram
            out[f"{x.shape[1]} samples"] = float((exact - ref).abs().max())
    return out


def frontend_line(model: torch.nn.Module, fs: int) -> str:
    """How the exported graph computes the model's features."""
    from echo_plugin.export.whisper_frontend import WHISPER_RATE, is_whisper_frontend

    frontend = model.frontend
    if not is_whisper_frontend(frontend):
        return f"{type(frontend).__name__}: ESPnet's log-mel with the STFT as a conv1d of the windowed DFT basis."
    encoder = frontend.whisper.encoder
    resample = (f"resampled {fs // 1000} -> {WHISPER_RATE // 1000} kHz in the graph (torchaudio's sinc / Hann filter, "
                "its kernel precomputed), " if fs != WHISPER_RATE else "")
    return (f"{type(frontend).__name__} (frozen Whisper encoder, {len(encoder.blocks)} blocks of width "
            f"{encoder.ln_post.normalized_shape[0]}): {resample}Whisper's log-mel in real arithmetic (the STFT as a "
            "conv1d of the windowed DFT basis; the floor at the maximum - 8 as Whisper's), then the encoder; "
            "its feature cache off, in PyTorch too. INT8 quantizes the Whisper encoder's linear layers as the "
            "encoder's; the resampling and log-mel stay float32.")


def coverage(pattern: str, workdir: Path) -> list[tuple[str, str, str]]:
    """(config, result, detail) for every config of ``pattern`` exported at random weights (8 kHz, 30 tokens)."""
    import echo_plugin
    from echo_plugin.export.onnx_ctc import ExportError, export_ctc, quiet
    from echo_plugin.recipe.overlay import espnet_config

    with quiet():
        echo_plugin.register()
        from espnet2.tasks.asr import ASRTask
    token_file = workdir / "coverage_tokens.txt"
    token_file.write_text("\n".join(["<blank>", "<unk>", *(f"t{i}" for i in range(NBPE - 2)), "<sos/eos>"]) + "\n")
    rows = []
    for config in sorted(glob.glob(str(REPO / pattern))):
        name = str(Path(config).relative_to(REPO))
        try:
            with quiet():
                args = ASRTask.get_parser().parse_args([
                    "--config", str(espnet_config(config, workdir)), "--token_list", str(token_file),
                    "--frontend_conf", f"fs={FS}", "--normalize", "utterance_mvn"])
                torch.manual_seed(0)
                model = ASRTask.build_model(args).eval()
            report = export_ctc(model, workdir / "coverage.onnx", FS)
        except ExportError as error:
            if error.onnx_error is None:  # refused before exporting
                rows.append((name, "not exported", str(error)))
            else:
                parts = "; ".join(f"{part}: {why}" for part, why in error.failed_parts.items()) or error.onnx_error
                rows.append((name, "not exported", f"ONNX: {parts}; TorchScript: {error.torchscript_error}"))
            continue
        parity = max(report.parity_max_abs.values())
        if report.format == "onnx":
            detail = f"max abs diff {parity:.1e}"
            swapped = sorted({type(model.get_submodule(n)).__name__ for n in report.swapped_layers if _has(model, n)})
            if swapped:
                detail += "; rewritten for export: " + ", ".join(swapped)
            rows.append((name, "ONNX", detail))
        else:
            why = "; ".join(f"{part}: {text}" for part, text in report.failed_parts.items()) or report.onnx_error
            rows.append((name, "TorchScript only", f"ONNX: {why}; TorchScript max abs diff {parity:.1e}"))
        print(f"coverage {name}: {rows[-1][1]}", file=sys.stderr, flush=True)
    return rows


def _has(model: torch.nn.Module, name: str) -> bool:
    with contextlib.suppress(AttributeError):
        model.get_submodule(name)
        return True
    return False


# --------------------------------------------------------------------------- report


def agreement(run: Run, ref: Run) -> dict:
    errors = sum(edit_distance(r, h) for r, h in zip(ref.ids, run.ids))
    tokens = sum(len(r) for r in ref.ids)
    same_frames = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(run.logp, ref.logp))
    frames = sum(len(a) for a in ref.logp)
    return {
        "errors": errors, "tokens": tokens, "ter": errors / tokens if tokens else float("nan"),
        "identical": sum(r == h for r, h in zip(ref.ids, run.ids)),
        "frames": same_frames / frames, "max_abs": max(float(np.abs(a - b).max()) for a, b in zip(run.logp, ref.logp)),
    }


def wer(run: Run, utts: list[Utterance]) -> float:
    import jiwer

    return jiwer.wer([u.text for u in utts], [t if t.strip() else "<empty>" for t in run.texts])


def report(args: argparse.Namespace, model_line: str, utts: list[Utterance], runs: list[Run], extra: dict,
           rows: list[tuple[str, str, str]] | None) -> str:
    import onnxruntime

    audio = sum(u.seconds for u in utts)
    ref = runs[0]
    trained = args.model is not None and all(u.text is not None for u in utts)
    rep = extra["report"]
    lines = [
        "# Exported CTC path: PyTorch vs ONNX float32 vs ONNX INT8",
        "",
        "The CTC path of a model (waveform -> log-mel -> normalize -> encoder -> CTC log-posteriors) as "
        "`python -m echo_plugin.bin.export_onnx` exports it (`echo_plugin/export/onnx_ctc.py`), run by "
        "onnxruntime in float32 and INT8, against the same path in PyTorch.",
        "",
        f"Generated by `python -m bench.export_int8 {' '.join(sys.argv[1:])}` on {datetime.date.today().isoformat()}: "
        f"{cpu_name()}, {os.cpu_count()} cores, 1 thread (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}, "
        f"torch {torch.get_num_threads()} thread(s), onnxruntime intra-op 1), python {platform.python_version()}, "
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}; the repository at {git_state()}.",
        "",
        f"Model: {model_line}",
        "",
        f"Audio: {len(utts)} utterances, {audio:.1f} s ({audio / len(utts):.2f} s mean), decoded one at a time; "
        "greedy CTC (best token per frame, repeats collapsed, blanks dropped).",
        "",
        f"Export: {rep.exporter}, opset {rep.opset}, {extra['export_seconds']:.1f} s including the parity check "
        f"(max |logp diff| on its two noise inputs: "
        f"{', '.join(f'{k} {v:.1e}' for k, v in rep.parity_max_abs.items())}; tolerance {rep.atol:g}). "
        f"Rewritten for export (instance only, same arithmetic in real ops): {len(rep.swapped_layers)} layers "
        f"({', '.join(extra['swapped_kinds']) or 'none'}): the rotary's complex multiplication as cos/sin "
        "arithmetic (ONNX has no complex type), ESPnet's 5000-frame sinusoid table computed per input "
        "instead of stored.",
        "",
        f"Frontend: {extra['frontend']}",
        "",
        *([f"Rounding: on the same two parity inputs PyTorch's own log-posteriors move by "
           f"{', '.join(f'{k} {v:.1e}' for k, v in extra['rounding'].items())} when its Whisper log-mel is "
           "computed in float64 instead of float32 (`torch.stft`): the size of difference any float32 "
           "reimplementation of the log-mel brings through Whisper's encoder, whence the Whisper tolerance.", ""]
          if extra.get("rounding") else []),
        "## Size, speed, agreement with PyTorch",
        "",
        "RTF = decode seconds / audio seconds (forward + greedy decoding; loading excluded; median of "
        f"{args.repeats} passes, the runs alternating per utterance). Load average (1/5/15 min) before and after "
        f"the timing: {extra['load'][0]} and {extra['load'][1]}; other jobs shared the machine, so absolute "
        "times are pessimistic, the ratios between runs fairer. Agreement is with PyTorch float32's greedy "
        "output: TER = token edit distance / PyTorch's tokens.",
        "",
        "|run|size on disk (MB)|RTF|ms per utterance|speed-up vs PyTorch|TER vs PyTorch|identical outputs|"
        "same best token per frame|max abs logp diff|" + ("WER vs reference|" if trained else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if trained else ""),
    ]
    rtf0 = None
    for run in runs:
        totals = [sum(p) for p in run.times]
        rtf = statistics.median(totals) / audio
        rtf0 = rtf0 or rtf
        a = agreement(run, ref)
        is_ref = run is ref
        size = f"{run.size_bytes / 1e6:.2f}"
        if is_ref:
            size += f" (whole model; CTC path alone {extra['ctc_path_bytes'] / 1e6:.2f})"
        if is_ref:
            ter = identical = frames = max_abs = "-"
        else:
            ter = (f"{100 * a['ter']:.2f} % ({a['errors']}/{a['tokens']})" if a["tokens"]
                   else f"n/a (PyTorch output empty; {a['errors']} tokens inserted)")
            identical = f"{a['identical']}/{len(utts)}"
            frames = f"{100 * a['frames']:.2f} %"
            max_abs = f"{a['max_abs']:.2e}"
        ms = 1000 * statistics.median(totals) / len(utts)
        row = f"|{run.name}|{size}|{rtf:.4f}|{ms:.1f}|{rtf0 / rtf:.2f}x|{ter}|{identical}|{frames}|{max_abs}|"
        if trained:
            row += f"{100 * wer(run, utts):.2f} %|"
        lines.append(row)
    n_tokens = sum(len(i) for i in ref.ids)
    top2 = np.concatenate([np.sort(lp, axis=-1)[:, -2:] for lp in ref.logp])
    margin = float(np.median(top2[:, 1] - top2[:, 0]))
    lines += ["", f"PyTorch's greedy output: {n_tokens} tokens over {len(utts)} utterances "
              f"({sum(1 for i in ref.ids if not i)} empty); median margin between the best and the second-best "
              f"token's log-posterior per frame: {margin:.3f}."]
    if not trained:
        lines += [
            "",
            "Random weights: the agreement columns measure how closely the exported graphs reproduce PyTorch's "
            "numbers on real speech features, not recognition accuracy. A random model's posteriors are flat (the "
            "margin above), so INT8 rounding flips the best token on frames where the two best are near-tied; a "
            "trained model's peaked posteriors should flip fewer, which only a run with `--model` shows. WER "
            "against references is reported only for a trained model (`--model` with `--wav_scp`, references "
            "from `text` beside it or `--text`).",
        ]
    if rows is not None:
        lines += [
            "",
            "## Which FSDD configs export",
            "",
            "Every config of `" + args.coverage_glob + "` built at random weights (8 kHz, 30 tokens, "
            "`normalize: utterance_mvn`) and exported with `export_ctc`: ONNX when onnxruntime matches PyTorch "
            "within 1e-4 on two lengths; else the parts that fail alone are named and the path is traced to "
            "TorchScript (checked the same way).",
            "",
            "|config|exported as|detail|",
            "|---|---|---|",
        ]
        for name, result, detail in rows:
            lines.append(f"|{name}|{result}|{detail.replace('|', '/')}|")
    return "\n".join(lines) + "\n"


def hand_written(path: Path) -> str:
    """The part of an existing report from its ``HAND_WRITTEN`` line on ("" when none)."""
    with contextlib.suppress(OSError):
        old = path.read_text(encoding="utf-8")
        if HAND_WRITTEN in old:
            return "\n" + old[old.index(HAND_WRITTEN):]
    return ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="packed model archive (stage 8's zip); needs --wav_scp")
    p.add_argument("--wav_scp", type=Path, default=None, help="utterances to decode with --model")
    p.add_argument("--text", type=Path, default=None, help="references (Kaldi text; default: text beside wav.scp)")
    p.add_argument("--limit", type=int, default=None, help="decode only the first N utterances of --wav_scp")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="config of the random model (%(default)s)")
    p.add_argument("--fsdd_root", type=Path, default=DEFAULT_FSDD, help="FSDD folder holding recordings/")
    p.add_argument("--repeats", type=int, default=5, help="timed passes over the utterances (%(default)s)")
    p.add_argument("--no_coverage", dest="coverage", action="store_false", help="skip the per-config export table")
    p.add_argument("--coverage_glob", default="egs/fsdd/asr1/conf/tuning/*.yaml", help="configs of the table")
    p.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    args = p.parse_args(argv)
    if (args.model is None) != (args.wav_scp is None):
        p.error("--model and --wav_scp go together")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    from echo_plugin.export.onnx_ctc import load_model

    with tempfile.TemporaryDirectory(prefix="export_int8_") as tmp:
        workdir = Path(tmp)
        if args.model is not None:
            loaded = load_model(args.model, cache_dir=workdir / "unpacked")
            weights = Path(loaded.model_file)
            text = args.text or args.wav_scp.with_name("text")
            utts = scp_utterances(args.wav_scp, text, loaded.fs, args.limit)
            which = f"the first {len(utts)} utterances" if args.limit is not None else "the utterances"
            params = sum(p.numel() for p in loaded.model.parameters())
            model_line = (f"packed model `{args.model}` (weights {weights.name}, {params / 1e6:.2f} M parameters), "
                          f"{which} of `{args.wav_scp}` at {loaded.fs} Hz.")
        else:
            loaded, weights = random_model(args.config, args.fsdd_root, workdir)
            utts = fsdd_utterances(args.fsdd_root)
            params = sum(p.numel() for p in loaded.model.parameters())
            ctc = sum(p.numel() for n, p in loaded.model.named_parameters() if not n.startswith("decoder."))
            shown = args.config.relative_to(REPO) if args.config.is_absolute() else args.config
            model_line = (f"random weights (seed 0), `{shown}` "
                          f"as the recipe builds it: 8 kHz log-mel, BPE {NBPE} ({len(loaded.token_list)} tokens), "
                          f"`speaker_mvn` with pooled statistics of the training speakers (george, jackson, yweweler), "
                          f"{params / 1e6:.2f} M parameters ({ctc / 1e6:.2f} M on the CTC path). "
                          f"Utterances: FSDD recordings of the test speaker lucas, takes 0-4 of each digit.")
        print(f"{len(utts)} utterances; exporting", file=sys.stderr, flush=True)
        load_before = load_average()
        runs, extra = measure(loaded, weights, utts, workdir, args.repeats)
        extra["load"] = (load_before, load_average())
        rows = coverage(args.coverage_glob, workdir) if args.coverage else None
        text = report(args, model_line, utts, runs, extra, rows)
    if args.out is not None:
        args.out.write_text(text + hand_written(args.out), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
