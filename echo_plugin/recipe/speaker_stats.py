"""Per-speaker feature statistics for ``normalize: speaker_mvn`` (Kaldi's per-speaker CMVN).

    python -m echo_plugin.recipe.speaker_stats --data_dir dump/raw/train --config conf/train.yaml \
        --fs 8000 --out_dir exp/asr_x/speaker_stats/train [--vad_range 8.0]

Runs the training config's frontend (one without trainable parameters, e.g.
ESPnet's ``default`` log-mel; of the Echo frontend, its raw frame features) on
every utterance of ``<data_dir>/wav.scp`` and
pools, per speaker of ``<data_dir>/utt2spk``, the mean and standard deviation of
the feature frames. Frames of silence are left out of the statistics: a frame
counts when its log energy (log-sum-exp over the feature bins) is within
``vad_range`` (natural-log units; 8.0 is about 35 dB) of the utterance's loudest
frame. Otherwise a speaker's statistics would depend on how much silence their
recordings hold (digitally silent gaps sit at the log floor), not on the speaker.

Writes, replacing ``--out_dir`` only when complete:

* ``stats/<speaker>.npy``: float32 (2, D), row 0 mean, row 1 standard deviation;
* ``spk_stats.scp``: ``<utt> <absolute path of its speaker's .npy>``, the data
  entry ESPnet loads as ``<dir>/spk_stats.scp,spk_stats,npy``;
* ``pooled_stats.npz``: ``count``, ``sum``, ``sum_square`` over every counted
  frame of the set (ESPnet's stats format): speaker_mvn's ``stats_file``, used for
  audio of an unknown speaker.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor

from echo_plugin.asr.normalize.speech_mvn import DEFAULT_VAD_RANGE, speech_frame_mask
from echo_plugin.inference.audio import AudioError, load_audio
from echo_plugin.nn.capabilities import SpeakerFeatures
from echo_plugin.recipe.data_dir import DataDirError, fault, read_table, write_table
from echo_plugin.recipe.io import atomic_dir
from echo_plugin.recipe.overlay import load_config

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def speech_frames(feats: Tensor, vad_range: float = DEFAULT_VAD_RANGE) -> Tensor:
    """feats (T, D) log features -> bool (T,): frames within ``vad_range`` of the loudest frame's log energy."""
    return speech_frame_mask(feats[None], torch.tensor([feats.shape[0]]), vad_range)[0]


@dataclass
class FrameStats:
    """Running count, sum and sum of squares of feature frames (float64)."""

    count: float = 0
    total: np.ndarray | None = None
    total_square: np.ndarray | None = None

    def add(self, frames: np.ndarray) -> None:
        """frames (N, D)."""
        frames = frames.astype(np.float64)
        if self.total is None:
            self.total = np.zeros(frames.shape[1])
            self.total_square = np.zeros(frames.shape[1])
        self.count += frames.shape[0]
        self.total += frames.sum(0)
        self.total_square += (frames * frames).sum(0)

    def merge(self, other: FrameStats) -> None:
        if other.total is None:
            return
        if self.total is None:
            self.total, self.total_square = np.zeros_like(other.total), np.zeros_like(other.total)
        self.count += other.count
        self.total += other.total
        self.total_square += other.total_square

    def with_prior(self, mean: np.ndarray, std: np.ndarray, frames: float) -> FrameStats:
        """These statistics plus ``frames`` virtual frames of mean ``mean`` and deviation ``std`` (online
        CMVN's prior: a short recording leans on it, a long one on its own frames)."""
        if frames <= 0:
            return self
        mean, var = mean.astype(np.float64), std.astype(np.float64) ** 2
        total = (0.0 if self.total is None else self.total) + frames * mean
        square = (0.0 if self.total_square is None else self.total_square) + frames * (var + mean * mean)
        return FrameStats(self.count + frames, total, square)

    def mean_std(self, eps: float = 1.0e-5) -> np.ndarray:
        """-> float32 (2, D): mean; standard deviation (floored at eps)."""
        if not self.count:
            raise ValueError("no frames")
        mean = self.total / self.count
        var = self.total_square / self.count - mean * mean
        return np.stack([mean, np.sqrt(np.maximum(var, eps * eps))]).astype(np.float32)


@dataclass
class SetStats:
    """Statistics of one data dir: per speaker and pooled."""

    speakers: dict[str, FrameStats] = field(default_factory=dict)
    pooled: FrameStats = field(default_factory=FrameStats)


def build_frontend(config: Mapping, fs: int | None) -> torch.nn.Module:
    """The config's frontend (name + frontend_conf, ``fs`` overridden); must hold no parameters."""
    from espnet2.tasks.asr import frontend_choices

    from echo_plugin import register

    register()
    name = config.get("frontend") or "default"
    conf = dict(config.get("frontend_conf") or {})
    if fs is not None:
        conf["fs"] = fs
    frontend = frontend_choices.get_class(name)(**conf)
    if not isinstance(frontend, SpeakerFeatures) and any(True for _ in frontend.parameters()):
        raise ValueError(
            f"speaker_mvn needs a frontend without trainable parameters (its statistics are computed once, "
            f"before training); frontend '{name}' has some: use global_mvn or utterance_mvn with it"
        )
    return frontend.eval()


@torch.no_grad()
def features(frontend: torch.nn.Module, speech: np.ndarray) -> Tensor:
    """speech (S,) float -> the features speaker_mvn normalizes (T, D): the frontend's
    ``speaker_features`` where it has them (the Echo frontend's raw frame features), else its output."""
    wav = torch.as_tensor(speech, dtype=torch.float32)[None]
    lengths = torch.tensor([wav.shape[1]])
    feats, _ = (frontend.speaker_features(wav, lengths) if isinstance(frontend, SpeakerFeatures)
                else frontend(wav, lengths))
    return feats[0]


def accumulate(
    frontend: torch.nn.Module, utterances: Iterable[tuple[str, str, np.ndarray]], vad_range: float
) -> SetStats:
    """(utt id, speaker, speech (S,)) items -> per-speaker and pooled statistics of their speech frames."""
    result = SetStats()
    for utt, speaker, speech in utterances:
        feats = features(frontend, speech)
        if feats.shape[0] == 0:
            raise DataDirError([f"utterance '{utt}': no feature frames"])
        frames = feats[speech_frames(feats, vad_range)].numpy()
        result.speakers.setdefault(speaker, FrameStats()).add(frames)
        result.pooled.add(frames)
    return result


def read_dir(data_dir: Path, fs: int | None) -> tuple[dict[str, str], Iterator[tuple[str, str, np.ndarray]]]:
    """-> utt2spk of the utterances in wav.scp, and an iterator of (utt id, speaker, speech (S,))."""
    wav_scp = read_table(data_dir / "wav.scp")
    utt2spk_all = read_table(data_dir / "utt2spk")
    missing = [fault(data_dir / "utt2spk", utt, f"no speaker ({path})") for utt, path in wav_scp.items()
               if utt not in utt2spk_all]
    if missing:
        raise DataDirError(missing)
    utt2spk = {utt: utt2spk_all[utt] for utt in wav_scp}

    def utterances() -> Iterator[tuple[str, str, np.ndarray]]:
        for utt, path in wav_scp.items():
            try:
                samples, rate = load_audio(path)
            except AudioError as err:
                raise DataDirError([fault(path, utt, str(err))]) from err
            if fs is not None and rate != fs:
                raise DataDirError([fault(path, utt, f"{rate} Hz, expected {fs} (run stage 2)")])
            if samples.shape[1] != 1:
                raise DataDirError([fault(path, utt, "not mono (run stage 2)")])
            yield utt, utt2spk[utt], samples[:, 0]

    return utt2spk, utterances()


def _file_names(speakers: Iterable[str]) -> dict[str, str]:
    """speaker -> file stem: the speaker id itself when it is a safe file name, else spk<n>."""
    names = {}
    for number, speaker in enumerate(sorted(speakers)):
        names[speaker] = speaker if _SAFE_NAME.fullmatch(speaker) else f"spk{number:06d}"
    return names


def write_stats(out_dir: Path, utt2spk: Mapping[str, str], stats: SetStats) -> None:
    """Write stats/<speaker>.npy, spk_stats.scp and pooled_stats.npz, replacing out_dir when done."""
    out_dir = out_dir.resolve()
    names = _file_names(stats.speakers)
    with atomic_dir(out_dir) as tmp:
        (tmp / "stats").mkdir()
        for speaker, frames in stats.speakers.items():
            np.save(tmp / "stats" / f"{names[speaker]}.npy", frames.mean_std())
        write_table(tmp / "spk_stats.scp",
                    {utt: out_dir / "stats" / f"{names[spk]}.npy" for utt, spk in sorted(utt2spk.items())})
        pooled = stats.pooled
        np.savez(tmp / "pooled_stats.npz", count=np.array(pooled.count), sum=pooled.total,
                 sum_square=pooled.total_square)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=Path, required=True, help="a stage-2 data dir (wav.scp, utt2spk)")
    parser.add_argument("--config", type=Path, required=True, help="training config (frontend, frontend_conf)")
    parser.add_argument("--fs", type=int, default=None, help="sampling rate (default: the config's)")
    parser.add_argument("--out_dir", type=Path, required=True)
    parser.add_argument("--vad_range", type=float, default=DEFAULT_VAD_RANGE,
                        help="frames within this many log-energy units of the loudest frame count")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)  # an overlay (base:) merged
        fs = args.fs if args.fs is not None else (config.get("frontend_conf") or {}).get("fs")
        frontend = build_frontend(config, fs)
        utt2spk, utterances = read_dir(args.data_dir, fs)
        if not utt2spk:
            raise DataDirError([f"{args.data_dir / 'wav.scp'}: no utterances"])
        stats = accumulate(frontend, utterances, args.vad_range)
        write_stats(args.out_dir, utt2spk, stats)
    except (DataDirError, ValueError, OSError) as err:
        print(f"speaker_stats: {err}", file=sys.stderr)
        return 1
    if len(stats.speakers) == len(utt2spk) > 1:
        print(f"speaker_stats: warning: every utterance of {args.data_dir} is its own speaker (utt2spk missing or "
              "one utterance per speaker), so each is normalized with its own statistics; give the real "
              "speakers in utt2spk", file=sys.stderr)
    print(f"speaker_stats: {len(stats.speakers)} speakers, {stats.pooled.count} frames -> {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
