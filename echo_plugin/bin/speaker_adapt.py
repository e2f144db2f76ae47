"""Speaker-adaptive second pass: adapt the model to each speaker on its first-pass hypotheses, decode again.

    python -m echo_plugin.bin.speaker_adapt --asr_train_config exp/x/config.yaml \
        --asr_model_file exp/x/valid.acc.ave.pth --decode_config conf/decode_asr.yaml \
        --adapt_config conf/adapt.yaml --data_dir dump/raw/test --hyp_text exp/x/decode/test/text \
        [--spk_stats_scp exp/x/speaker_stats/test/spk_stats.scp] [--speakers keys.1.scp] --output_dir out

For every speaker of ``data_dir/utt2spk`` (or those listed in ``--speakers``) the model is
adapted as ``echo_plugin.inference.speaker_adapt`` describes, the speaker's utterances are
decoded with ESPnet's beam search and the adapted weights, and the original weights are
restored. Writes ``output_dir/text`` (``<utt> <hypothesis>``, sorted) and
``output_dir/adapt.jsonl`` (per speaker: utterances, pseudo-labels kept, loss per epoch,
seconds). Weights load strictly.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

from echo_plugin import register
from echo_plugin.inference import speaker_speech2text, strict_load

register()
strict_load.install()
speaker_speech2text.install()

from echo_plugin.asr.normalize.speaker_mvn import SpeakerMVN  # noqa: E402
from echo_plugin.bin.transcribe import model_rate  # noqa: E402
from echo_plugin.inference.audio import read_audio  # noqa: E402
from echo_plugin.inference.speaker_adapt import AdaptConfig, Utterance, adapt, pseudo_labels  # noqa: E402
from echo_plugin.inference.speaker_speech2text import EchoSpeech2Text  # noqa: E402


def read_table(path: Path) -> dict[str, str]:
    """Kaldi table ``<key> <value>``; the value may be empty (an empty hypothesis)."""
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            table[key] = value.strip()
    return table


def load_yaml(path: Optional[Path]) -> dict:
    return {} if path is None else (yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def adapt_config(path: Optional[Path]) -> AdaptConfig:
    """AdaptConfig from a YAML file; an unknown key is an error naming it."""
    options = load_yaml(path)
    unknown = sorted(set(options) - {f.name for f in fields(AdaptConfig)})
    if unknown:
        raise ValueError(f"{path}: unknown adaptation option(s) {unknown}")
    return AdaptConfig(**options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_train_config", type=Path, required=True)
    parser.add_argument("--asr_model_file", type=Path, required=True)
    parser.add_argument("--decode_config", type=Path, help="YAML of Speech2Text options (beam_size, ctc_weight, ...)")
    parser.add_argument("--adapt_config", type=Path, help="YAML of AdaptConfig options (default: its defaults)")
    parser.add_argument("--data_dir", type=Path, required=True, help="Kaldi data dir: wav.scp, utt2spk")
    parser.add_argument("--hyp_text", type=Path, required=True, help="first-pass hypotheses of the data dir")
    parser.add_argument("--spk_stats_scp", type=Path, help="speaker statistics (normalize: speaker_mvn models)")
    parser.add_argument("--speakers", type=Path, help="file whose first column lists the speakers to do (all)")
    parser.add_argument("--output_dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        cfg = adapt_config(args.adapt_config)
    except (TypeError, ValueError) as err:
        parser.error(str(err))

    wav = read_table(args.data_dir / "wav.scp")
    utt2spk = read_table(args.data_dir / "utt2spk")
    hypotheses = read_table(args.hyp_text)
    missing = sorted(set(wav) - set(hypotheses))
    if missing:
        parser.error(f"{args.hyp_text} has no hypothesis for {len(missing)} utterance(s) of {args.data_dir}, "
                     f"e.g. {missing[0]}")
    speakers = sorted(set(utt2spk.values()))
    if args.speakers is not None:
        speakers = [line.split()[0] for line in args.speakers.read_text().splitlines() if line.strip()]

    speech2text = EchoSpeech2Text(asr_train_config=str(args.asr_train_config),
                                  asr_model_file=str(args.asr_model_file), device="cpu",
                                  **load_yaml(args.decode_config))
    model = speech2text.asr_model
    stats_table = read_table(args.spk_stats_scp) if args.spk_stats_scp else {}
    if isinstance(getattr(model, "normalize", None), SpeakerMVN) and not stats_table:
        parser.error("the model normalizes with speaker_mvn: give --spk_stats_scp")
    fs = model_rate(str(args.asr_train_config))

    def to_ids(text: str) -> list[int]:
        return speech2text.converter.tokens2ids(speech2text.tokenizer.text2tokens(text)) if text else []

    original = copy.deepcopy(model.state_dict())
    args.output_dir.mkdir(parents=True, exist_ok=True)
    lines, report = [], []
    for speaker in speakers:
        start = time.time()
        keys = sorted(k for k, s in utt2spk.items() if s == speaker and k in wav)
        if not keys:
            parser.error(f"speaker {speaker!r} has no utterance in {args.data_dir}")
        utts = [Utterance(k, read_audio(wav[k], fs, utt_id=k),
                          np.load(stats_table[k]) if k in stats_table else None) for k in keys]
        examples = pseudo_labels(model, utts, hypotheses, to_ids, cfg.select)
        losses = adapt(model, examples, cfg)
        for utt in utts:
            lines.append(f"{utt.key} {speech2text(utt.speech, spk_stats=utt.spk_stats)[0][0]}".rstrip())
        model.load_state_dict(original)
        report.append({"speaker": speaker, "utterances": len(utts), "pseudo_labels": len(examples),
                       "losses": [round(x, 4) for x in losses], "seconds": round(time.time() - start, 1)})
        print(json.dumps(report[-1]), flush=True)
    (args.output_dir / "text").write_text("".join(f"{line}\n" for line in sorted(lines)), encoding="utf-8")
    (args.output_dir / "adapt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in report), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
