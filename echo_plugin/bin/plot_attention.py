"""Decode one utterance and plot the decoder's cross-attention (and a dual decoder's gates).

    python -m echo_plugin.bin.plot_attention --model_file exp/asr_x/valid.acc.ave.pth \
        --config exp/asr_x/config.yaml --wav a.wav --out_dir plots/ [--beam_size 1] [--ctc_weight 0.3]
    python -m echo_plugin.bin.plot_attention --packed_model exp/asr_x/x.zip --wav a.wav --out_dir plots/

Decodes with ESPnet's Speech2Text (``--beam_size 1``: greedy; ``--decode_config``
YAML overrides any decoding option), then runs the decoder teacher-forced on
<sos> + the hypothesis and writes to ``--out_dir``:

- ``hypothesis.txt``: the text and its tokens;
- per decoder layer ``i``: ``cross_attn_layer{i}.png`` and ``.npy`` (H, L, T): weights
  of the L = tokens + 1 decoder steps (the last predicts <eos>) over the T encoder frames;
  for a dual decoder instead ``dual_attn_layer{i}.png`` (primary and secondary maps side
  by side, the gate alpha over output tokens below), ``primary_attn_layer{i}.npy``,
  ``secondary_attn_layer{i}.npy`` (H, L, T) and ``gate_layer{i}.npy`` (L,);
- ``spectrogram.png``: the utterance's spectrogram, with the f0 track below for
  models whose encoder reads pitch (``f0.npy``: Hz per frontend frame, 0 = unvoiced).

Weights load strictly; audio at another rate is resampled to the model's.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
import yaml

from echo_plugin import register
from echo_plugin.inference.attention_maps import LayerMaps, decoder_maps
from echo_plugin.inference.attention_plots import plot_cross_attention, plot_dual_attention, plot_spectrogram
from echo_plugin.inference.audio import AudioError, read_audio
from echo_plugin.inference.transcriber import load, model_rate

register()


def build_speech2text(args: argparse.Namespace, decoding: dict, cache_dir: Path):
    """(Speech2Text, training config path) from a model file + config or a packed model."""
    if args.packed_model is not None:
        transcriber = load(args.packed_model, decoding, device=args.device, cache_dir=cache_dir)
        return transcriber.speech2text, str(transcriber.train_config)
    from echo_plugin.inference.speaker_speech2text import EchoSpeech2Text

    return EchoSpeech2Text(asr_train_config=str(args.config), asr_model_file=str(args.model_file),
                           device=args.device, **decoding), str(args.config)


def encoder_f0(model: torch.nn.Module, speech: torch.Tensor, lengths: torch.Tensor) -> Optional[np.ndarray]:
    """The frontend's f0 (frames,) when the model's encoder reads pitch, else None."""
    if not getattr(model, "encoder_wants_f0", False):
        return None
    _, _, f0 = model._extract_feats_f0(speech, lengths, with_f0=True)
    return None if f0 is None else f0[0].float().cpu().numpy()


def teacher_forced_maps(model: torch.nn.Module, speech: torch.Tensor, token_int: List[int]) -> List[LayerMaps]:
    """Encode ``speech`` (1, N) and run the decoder on <sos> + ``token_int``."""
    lengths = torch.tensor([speech.shape[1]])
    encoded, enc_lens = model.encode(speech, lengths)
    if isinstance(encoded, tuple):  # intermediate CTC outputs ride along
        encoded = encoded[0]
    ys_in = torch.tensor([[model.sos, *token_int]], device=encoded.device)
    return decoder_maps(model.decoder, encoded, enc_lens, ys_in, torch.tensor([ys_in.shape[1]]))


def write_layer(maps: LayerMaps, index: int, labels: List[str], out_dir: Path) -> List[Path]:
    """The .npy arrays and the PNG of one layer."""
    primary = maps.primary.float().cpu().numpy()
    if maps.secondary is None:
        np.save(out_dir / f"cross_attn_layer{index}.npy", primary)
        png = plot_cross_attention(primary, labels, f"layer {index} cross-attention",
                                   out_dir / f"cross_attn_layer{index}.png")
        return [out_dir / f"cross_attn_layer{index}.npy", png]
    secondary = maps.secondary.float().cpu().numpy()
    gate = maps.gate.float().cpu().numpy()
    names = [out_dir / f"{kind}_layer{index}.npy" for kind in ("primary_attn", "secondary_attn", "gate")]
    for name, array in zip(names, (primary, secondary, gate)):
        np.save(name, array)
    png = plot_dual_attention(primary, secondary, gate, labels, f"layer {index}",
                              out_dir / f"dual_attn_layer{index}.png")
    return [*names, png]


def run(args: argparse.Namespace) -> List[Path]:
    """Decode, plot, and return the files written."""
    decoding = {"beam_size": args.beam_size, "ctc_weight": args.ctc_weight, "nbest": 1}
    if args.decode_config is not None:
        decoding.update(yaml.safe_load(args.decode_config.read_text(encoding="utf-8")) or {})
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        speech2text, train_config = build_speech2text(args, decoding, Path(tmp))
        fs = model_rate(train_config)
        samples = read_audio(args.wav, fs)
        text, tokens, token_int, _ = speech2text(samples)[0]
        model = speech2text.asr_model.eval()
        speech = torch.from_numpy(samples).float()[None].to(args.device)
        with torch.no_grad():
            layers = teacher_forced_maps(model, speech, list(token_int))
            f0 = encoder_f0(model, speech, torch.tensor([speech.shape[1]]))
    labels = [*tokens, "<eos>"]
    (args.out_dir / "hypothesis.txt").write_text(f"{text}\n{' '.join(tokens)}\n", encoding="utf-8")
    written = [args.out_dir / "hypothesis.txt"]
    for index, maps in enumerate(layers):
        written += write_layer(maps, index, labels, args.out_dir)
    if f0 is not None:
        np.save(args.out_dir / "f0.npy", f0)
        written.append(args.out_dir / "f0.npy")
    written.append(plot_spectrogram(samples, fs, f0, args.out_dir / "spectrogram.png"))
    return written


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_file", type=Path, default=None, help="weights, e.g. exp/<tag>/valid.acc.ave.pth")
    parser.add_argument("--config", type=Path, default=None, help="training config, e.g. exp/<tag>/config.yaml")
    parser.add_argument("--packed_model", type=Path, default=None, help="stage 8's archive instead of the two")
    parser.add_argument("--wav", type=Path, required=True, help="the utterance to decode and plot")
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--beam_size", type=int, default=1, help="1 = greedy")
    parser.add_argument("--ctc_weight", type=float, default=0.3)
    parser.add_argument("--decode_config", type=Path, default=None, help="YAML of decoding options (overrides)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if (args.packed_model is None) == (args.model_file is None or args.config is None):
        parser.error("give either --model_file and --config, or --packed_model")
    for path in (args.packed_model, args.model_file, args.config, args.decode_config):
        if path is not None and not path.is_file():
            parser.error(f"no such file: {path}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        written = run(args)
    except AudioError as error:
        print(f"plot_attention: error: {error}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
