"""K fixed noisy copies of every training utterance (asr.sh --noisy_copies K).

    python -m echo_plugin.recipe.noisy_copies --src dump/raw/train --dst data/train_noisy2 --copies 2 \
        --fs 8000 [--snr_range "0 20"] [--noise colored|white|pink|brown|babble|DIR] [--seed 0]

Noise augmentation drawn once and stored, for a model whose frozen front part caches its output
per clip (:class:`~echo_plugin.asr.audio_output_cache.AudioOutputCache`): on-the-fly noise
(asr.sh --noise_dir / --babble / --colored_noise, ESPnet's preprocessor) gives other samples every
epoch, which no cache can follow. ``--dst`` is a Kaldi data dir holding every utterance ``u`` of
``--src`` as it is, plus ``u-noise1`` .. ``u-noise<K>``: ``u`` plus noise at an SNR drawn
uniformly from ``--snr_range`` (dB, as ESPnet's ``--noise_db_range`` measures it: see
``noise_audio``), each copy its own noise segment and SNR. Copies keep the transcript and the
speaker of their source. Their 16-bit mono wavs at ``--fs`` are under ``<dst>/wav/``; the SNR of
every copy is in ``<dst>/snr``.

The noise of a copy is seeded by ``--seed`` and its id alone (a rerun writes the same bytes):

- ``white``, ``pink``, ``brown``: generated noise; ``colored``: one of the three per copy;
- ``babble``: 3-5 talkers of ``--src`` other than the utterance's own speaker;
- a directory: a random segment of a random .wav/.flac below it (recursive).

The SNR test sets (:mod:`echo_plugin.recipe.snr_sets`) draw their noise the same way from the
same kinds, from other seeds (their utterance ids), never from a test speaker.

A missing or unreadable wav, a rate other than ``--fs`` or a silent utterance is an error naming
the utterance and file; nothing is written then. A ``--dst`` made with the same options from an
unchanged ``--src`` is not rewritten.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from echo_plugin.inference.audio import AudioError
from echo_plugin.recipe.data_dir import DataDirError, run_reporting_faults, spk2utt, write_table
from echo_plugin.recipe.format_data import write_wav
from echo_plugin.recipe.io import atomic_dir, is_current, write_stamp
from echo_plugin.recipe.noise import load_speakers
from echo_plugin.recipe.noise_audio import mix_at_snr, utt_rng
from echo_plugin.recipe.snr_sets import (
    NoiseSource,
    SourceSet,
    babble_of,
    build_source,
    options_stamp,
    read_source,
    readable_utterances,
)

STAMP = "noisy_copies.json"


def copy_id(uttid: str, k: int) -> str:
    """The id of copy ``k`` (1-based) of ``uttid``: a suffix, so the speaker prefix and sort order stay."""
    return f"{uttid}-noise{k}"


def noise_for(args: argparse.Namespace, source: SourceSet) -> dict[str, NoiseSource]:
    """A noise source per speaker of ``source`` (babble leaves the speaker out; the others are shared)."""
    speakers = sorted(set(source.utt2spk.values()))
    if args.noise != "babble":
        shared = build_source(args, set())
        return {spk: shared for spk in speakers}
    by_speaker = load_speakers(args.src, args.fs, args.seed)  # read once, shared by every speaker's babble
    sources = {}
    for spk in speakers:
        others = {s: utts for s, utts in by_speaker.items() if s != spk}
        if not others:
            raise ValueError(f"--noise babble: {args.src} has no speaker besides {spk}")
        sources[spk] = babble_of(others)
    return sources


def stamp_of(args: argparse.Namespace) -> dict[str, str]:
    """Options and source mtimes the copies were made from."""
    return options_stamp(args, ("dst",))


def make_noisy_copies(args: argparse.Namespace) -> Path:
    """Write ``args.dst`` unless it is up to date; its path."""
    stamp = stamp_of(args)
    if is_current(args.dst / STAMP, stamp):
        print(f"{args.dst} is up to date")
        return args.dst
    source = read_source(args.src)
    noise = noise_for(args, source)
    lo, hi = args.snr_range
    scp = args.src / "wav.scp"
    wav_scp, text, utt2spk, snrs = dict(source.wav_scp), dict(source.text), dict(source.utt2spk), {}
    faults: list[str] = []
    with atomic_dir(args.dst) as tmp:
        for uttid, speech in readable_utterances(scp, source.wav_scp, args.fs, faults):
            spk = source.utt2spk[uttid]
            for k in range(1, args.copies + 1):
                cid = copy_id(uttid, k)
                rng = utt_rng(args.seed, cid)
                snr = float(rng.uniform(lo, hi))
                write_wav(mix_at_snr(speech, noise[spk](rng, len(speech)), snr), args.fs, tmp / "wav" / f"{cid}.wav")
                wav_scp[cid] = str((args.dst / "wav" / f"{cid}.wav").absolute())
                text[cid], utt2spk[cid], snrs[cid] = source.text[uttid], spk, f"{snr:.2f}"
        if faults:
            raise DataDirError(faults)
        for name, table in (("wav.scp", wav_scp), ("text", text), ("utt2spk", utt2spk), ("spk2utt", spk2utt(utt2spk)),
                            ("snr", snrs)):
            write_table(tmp / name, table)
        write_stamp(tmp / STAMP, stamp)
    print(f"wrote {args.dst}: {len(source.wav_scp)} utterances and {args.copies} noisy copies of each "
          f"({args.noise}, {lo:g}-{hi:g} dB)")
    return args.dst


def snr_range(text: str) -> tuple[float, float]:
    """``"LO HI"`` (or one number) in dB -> (lo, hi) with lo <= hi."""
    values = [float(v) for v in text.split()]
    if len(values) not in (1, 2) or values[0] > values[-1]:
        raise argparse.ArgumentTypeError(f"expected 'LO HI' dB with LO <= HI (or one number), got '{text}'")
    return values[0], values[-1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="training data dir (wavs at --fs)")
    parser.add_argument("--dst", type=Path, required=True, help="the data dir to write (sources + copies)")
    parser.add_argument("--copies", type=int, required=True, help="noisy copies per utterance (K >= 1)")
    parser.add_argument("--fs", type=int, required=True, help="sample rate of the audio (Hz)")
    parser.add_argument("--snr_range", type=snr_range, default=(0.0, 20.0), help="'LO HI' dB (default '0 20')")
    parser.add_argument("--noise", default="colored", help="white|pink|brown|colored|babble or a noise dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.copies < 1:
        parser.error(f"--copies must be 1 or more, got {args.copies}")
    args.src = args.src.absolute()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_reporting_faults("noisy_copies", lambda: make_noisy_copies(args),
                                (AudioError, FileNotFoundError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
