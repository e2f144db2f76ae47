"""Speaker-adaptive second pass: adapt the model to each speaker on its first-pass hypotheses, decode again.

    python -m echo_plugin.bin.speaker_adapt --asr_train_config exp/x/config.yaml \
        --asr_model_file exp/x/valid.acc.ave.pth --decode_config conf/decode_asr.yaml \
        --adapt_config conf/adapt.yaml --units units.txt --data_root dump/raw \
        --hyp_root exp/x/decode_asr_valid.acc.ave [--spk_stats_root exp/x/speaker_stats] --output_dir out

A unit is one speaker of one set, a line ``<set> <speaker>`` of ``--units``: the set's data
dir is ``<data_root>/<set>`` (wav.scp, utt2spk), its first-pass hypotheses
``<hyp_root>/<set>/text`` and, for ``normalize: speaker_mvn`` models, its statistics
``<spk_stats_root>/<set>/spk_stats.scp``. For each unit the model is adapted as
``echo_plugin.inference.speaker_adapt`` describes (``adapt_and_decode``: ESPnet's beam search
decodes with the adapted weights; the original ones are restored after each unit). Writes, per
set, ``output_dir/<set>/text`` (``<utt> <hypothesis>``, sorted), ``adapt.jsonl`` (per unit:
utterances, per round the pseudo-labels kept and the loss per epoch, seconds) and
``seconds`` (one line per unit). Weights load strictly.
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

register()

from echo_plugin.asr.normalize.speaker_mvn import SpeakerMVN  # noqa: E402
from echo_plugin.inference.audio import read_audio  # noqa: E402
from echo_plugin.inference.speaker_adapt import AdaptConfig, Utterance, adapt_and_decode  # noqa: E402
from echo_plugin.inference.speaker_speech2text import EchoSpeech2Text  # noqa: E402
from echo_plugin.inference.transcriber import model_rate  # noqa: E402


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


def read_units(path: Path) -> list[tuple[str, str]]:
    """(set, speaker) per line of ``path``; ValueError naming the line if it has not two fields."""
    units = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields_ = line.split()
        if len(fields_) != 2:
            raise ValueError(f"{path}:{number}: expected '<set> <speaker>', got {line!r}")
        units.append((fields_[0], fields_[1]))
    return units


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_train_config", type=Path, required=True)
    parser.add_argument("--asr_model_file", type=Path, required=True)
    parser.add_argument("--decode_config", type=Path, help="YAML of Speech2Text options (beam_size, ctc_weight, ...)")
    parser.add_argument("--adapt_config", type=Path, help="YAML of AdaptConfig options (default: its defaults)")
    parser.add_argument("--units", type=Path, required=True, help="lines '<set> <speaker>' to adapt and decode")
    parser.add_argument("--data_root", type=Path, required=True, help="holds <set>/wav.scp, <set>/utt2spk")
    parser.add_argument("--hyp_root", type=Path, required=True, help="holds <set>/text, the first-pass hypotheses")
    parser.add_argument("--spk_stats_root", type=Path, help="holds <set>/spk_stats.scp (speaker_mvn models)")
    parser.add_argument("--output_dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        cfg = adapt_config(args.adapt_config)
        units = read_units(args.units)
    except (TypeError, ValueError) as err:
        parser.error(str(err))

    speech2text = EchoSpeech2Text(asr_train_config=str(args.asr_train_config),
                                  asr_model_file=str(args.asr_model_file), device="cpu",
                                  **load_yaml(args.decode_config))
    model = speech2text.asr_model
    uses_stats = isinstance(getattr(model, "normalize", None), SpeakerMVN)
    if uses_stats and args.spk_stats_root is None:
        parser.error("the model normalizes with speaker_mvn: give --spk_stats_root")
    fs = model_rate(str(args.asr_train_config))

    def to_ids(text: str) -> list[int]:
        return speech2text.converter.tokens2ids(speech2text.tokenizer.text2tokens(text)) if text else []

    def decode(utt: Utterance) -> str:
        return speech2text(utt.speech, spk_stats=utt.spk_stats)[0][0]

    original = copy.deepcopy(model.state_dict())
    lines: dict[str, list[str]] = {}
    reports: dict[str, list[dict]] = {}
    for set_name, speaker in units:
        start = time.time()
        data_dir = args.data_root / set_name
        wav = read_table(data_dir / "wav.scp")
        hypotheses = read_table(args.hyp_root / set_name / "text")
        stats = read_table(args.spk_stats_root / set_name / "spk_stats.scp") if uses_stats else {}
        keys = sorted(k for k, s in read_table(data_dir / "utt2spk").items() if s == speaker and k in wav)
        if not keys:
            parser.error(f"speaker {speaker!r} has no utterance in {data_dir}")
        for key in keys:
            if key not in hypotheses:
                parser.error(f"{args.hyp_root / set_name / 'text'} has no hypothesis for utterance {key}")
            if uses_stats and key not in stats:
                parser.error(f"{args.spk_stats_root / set_name / 'spk_stats.scp'} has no statistics for {key}")
        utts = [Utterance(k, read_audio(wav[k], fs, utt_id=k), np.load(stats[k]) if uses_stats else None)
                for k in keys]
        adapted, rounds = adapt_and_decode(model, original, utts, hypotheses, to_ids, decode, cfg)
        lines.setdefault(set_name, []).extend(f"{key} {text}".rstrip() for key, text in adapted.items())
        reports.setdefault(set_name, []).append(
            {"set": set_name, "speaker": speaker, "utterances": len(utts),
             "rounds": [{"pseudo_labels": r.pseudo_labels, "losses": [round(x, 4) for x in r.losses]}
                        for r in rounds],
             "seconds": round(time.time() - start, 1)})
        print(json.dumps(reports[set_name][-1]), flush=True)
    for set_name, set_lines in lines.items():
        out = args.output_dir / set_name
        out.mkdir(parents=True, exist_ok=True)
        (out / "text").write_text("".join(f"{line}\n" for line in sorted(set_lines)), encoding="utf-8")
        (out / "adapt.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reports[set_name]), encoding="utf-8")
        (out / "seconds").write_text("".join(f"{r['seconds']}\n" for r in reports[set_name]), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
