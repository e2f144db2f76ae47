"""Dev-only WER of cheaper deployed decodings: each fold's packed seed-0 model on its dev speaker.

    OMP_NUM_THREADS=1 python -m bench.decode_dev_folds --folds_root egs/fsdd/asr1/folds \\
        --config conf/tuning/train_asr_echo_whisper_frontend.yaml > dev.jsonl

One JSON line per (fold, variant, connected / isolated): errors, words, WER, CPU-time RTF. The variants are
decoding overrides over the packed options, with or without the Whisper front end in int8
(``PretrainedWhisperFrontend.quantize_int8``). Used for bench/TRANSCRIBE_whisper.md; the test speakers are
never decoded here.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

VARIANTS = {"beam4_ctc08": ({}, False), "ctc_greedy": ({"ctc_weight": 1.0, "beam_size": 1}, False),
            "ctc_greedy_int8": ({"ctc_weight": 1.0, "beam_size": 1}, True), "beam4_ctc08_int8": ({}, True)}


def packed_model(fold_dir: Path, config_stem: str, seed: int, tags: dict[str, str]) -> Path:
    """The fold's packed model of this config and seed (stage 8's zip): ``exp/asr_<stem>_seed<seed>/``, or the
    experiment ``tags`` names for this fold (a run recorded under another tag)."""
    exp = fold_dir / "exp" / tags.get(fold_dir.name, f"asr_{config_stem}_seed{seed}")
    found = sorted(exp.glob("*.zip"))
    if len(found) != 1:
        raise SystemExit(f"{exp}: {len(found)} packed models (one expected; name the experiment with --tag)")
    return found[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds_root", type=Path, required=True, help="the fold runner's folds/ dir")
    parser.add_argument("--config", type=Path, required=True, help="the training config whose models to decode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--tag", nargs="*", default=[], metavar="FOLD=EXP",
                        help="experiment dir of a fold whose run has another tag, e.g. "
                             "test-lucas=asr_train_asr_echo_whisper_frontend_nosp_seed0")
    args = parser.parse_args(argv)
    import jiwer
    import torch

    from echo_plugin.inference.transcriber import load

    torch.set_num_threads(1)
    for fold_dir in sorted(p for p in args.folds_root.iterdir() if (p / "dump/raw/dev/wav.scp").is_file()):
        model = packed_model(fold_dir, args.config.stem, args.seed, dict(t.split("=", 1) for t in args.tag))
        dev = fold_dir / "dump/raw/dev"
        scp = [line.split(maxsplit=1) for line in (dev / "wav.scp").read_text().splitlines()]
        refs = dict(line.split(maxsplit=1) for line in (dev / "text").read_text().splitlines())
        for name in args.variants:
            overrides, int8 = VARIANTS[name]
            transcriber = load(model, overrides=overrides)
            if int8:
                transcriber.model.frontend.quantize_int8()
            for kind in ("connected", "isolated"):
                utts = [(u, transcriber.read(p)) for u, p in scp if ("-conn-" in u) == (kind == "connected")]
                seconds = sum(len(a) for _, a in utts) / transcriber.fs
                start = time.process_time()
                hyps = [transcriber.transcribe(a).text for _, a in utts]
                cpu = time.process_time() - start
                out = jiwer.process_words([refs[u] for u, _ in utts], hyps)
                errors = out.substitutions + out.deletions + out.insertions
                print(json.dumps({"fold": fold_dir.name, "model": model.name, "variant": name, "kind": kind,
                                  "utterances": len(utts), "errors": errors,
                                  "words": sum(len(refs[u].split()) for u, _ in utts),
                                  "wer": round(100 * out.wer, 2), "cpu_rtf": round(cpu / seconds, 4)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
