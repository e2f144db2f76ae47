"""Speed perturbation of a training data dir, as ESPnet's asr.sh does with Kaldi's scripts.

    python -m echo_plugin.recipe.speed_perturb --src data/train --dst data/train_sp \
        --factors 0.9 1.0 1.1 [--nj 2] [--audio_format flac.ark --cmd "${train_cmd}"]

For each factor ``f`` other than 1 every utterance ``u`` of speaker ``s`` becomes
``sp<f>-u`` of speaker ``sp<f>-s``, its audio played ``f`` times faster (the
duration scales by ``1/f`` and the pitch by ``f``, like ``sox speed f``): the
samples are resampled from a nominal rate ``f * fs`` to ``fs``. Factor 1 keeps
the original ids and audio files, as ESPnet does (``utils/combine_data.sh`` of
``data/<train>`` with the ``_sp<f>`` dirs). Transcripts are unchanged.

Perturbed audio is written as 16-bit FLAC files under ``<dst>/audio/`` (soundfile
reads them in place at stage 2), or with ``--audio_format wav.ark`` / ``flac.ark``
into ``--nj`` archives ``<dst>/audio/wav.<j>.ark`` (:mod:`echo_plugin.recipe.audio_archive`;
stage 2 references their entries in place), one job each through ``--cmd`` (asr.sh: cmd.sh's
``${train_cmd}``; default: local processes), logging to ``<log_dir>/speed_perturb_<dst name>.<j>.log``;
``wav.scp`` holds absolute paths. ``--dst`` is built in a temporary sibling and renamed into
place; the output is the same bytes on every run. A ``--dst`` that is newer than every file of
``--src`` and was made with the same factors and kind of output (files or the archive format,
``<dst>/audio_format``) is left as it is.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from echo_plugin.inference.audio import AudioError
from echo_plugin.recipe.audio_archive import (
    AUDIO_FORMATS,
    ArchiveWriter,
    is_archive_format,
    read_entry,
    write_audio_file,
)
from echo_plugin.recipe.cli import report
from echo_plugin.recipe.data_dir import DataDirError, fault, spk2utt, write_table
from echo_plugin.recipe.format_data import read_source
from echo_plugin.recipe.io import atomic_dir
from echo_plugin.recipe.shards import ShardError, local_pool_size, run_shards, split

FACTORS_FILE = "speed_perturb_factors"
FORMAT_FILE = "audio_format"  # flac (files) or the archive format


@dataclass(frozen=True)
class ArchiveOptions:
    """How perturbed audio goes into archives: the format, the jobs and their command and logs."""

    audio_format: str = "flac"  # flac: one FLAC file per utterance; wav.ark / flac.ark: archives
    nj: int = 1
    cmd: str | None = None  # the job command (cmd.sh's ${train_cmd}); None: local processes
    log_dir: Path | None = None  # the jobs' logs (default: <dst>/../log)


@dataclass(frozen=True)
class PerturbJob:
    """One utterance's audio to speed up by ``factor`` into ``out``."""

    uttid: str
    src: Path
    factor: str
    out: Path


def parse_factor(text: str) -> Fraction:
    """A speed factor as an exact ratio of small integers; ValueError unless positive."""
    try:
        value = Fraction(text).limit_denominator(1000)
    except (ValueError, ZeroDivisionError) as e:
        raise ValueError(f"speed factor '{text}' is not a number") from e
    if value <= 0:
        raise ValueError(f"speed factor '{text}' must be positive")
    return value


def change_speed(samples: np.ndarray, factor: Fraction) -> np.ndarray:
    """(T,) float samples -> (about T / factor,) samples, played ``factor`` times faster.

    Band-limited sinc resampling (torchaudio) from ``factor.numerator`` to
    ``factor.denominator`` nominal rates."""
    if factor == 1:
        return samples
    import torch
    import torchaudio.functional as F

    torch.set_num_threads(1)
    wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    return F.resample(wave, factor.numerator, factor.denominator).numpy()


def perturbed(job: PerturbJob) -> tuple[np.ndarray, int] | str:
    """One utterance sped up: mono samples (T,) and their rate; a fault line when its audio is unusable."""
    try:
        data, rate = read_entry(job.src)
    except AudioError as e:
        return fault(job.src, job.uttid, str(e))
    return change_speed(data.mean(axis=1), parse_factor(job.factor)), rate


def perturb_one(job: PerturbJob) -> str | None:
    """Write one perturbed utterance as a FLAC file; a fault line when its audio is unusable."""
    result = perturbed(job)
    if isinstance(result, str):
        return result
    write_audio_file(*result, job.out, "flac")
    return None


def perturb_shard(task: dict) -> list[dict]:
    """One job of the archive formats: its utterances (``task["items"]``: [uttid, source, factor]) sped up into
    one archive; one result each, ``{"uttid", "path"}`` or ``{"fault"}``."""
    results: list[dict] = []
    with ArchiveWriter(Path(task["archive"]), Path(task["final"]), task["audio_format"]) as archive:
        for uttid, src, factor in task["items"]:
            result = perturbed(PerturbJob(uttid, Path(src), factor, Path(task["final"])))
            if isinstance(result, str):
                results.append({"fault": result})
            else:
                results.append({"uttid": uttid, "path": archive.write(uttid, *result)})
    return results


def perturb_files(jobs: list[PerturbJob], nj: int) -> list[str]:
    """Write each job's FLAC file over ``nj`` local processes (at most this machine's cores:
    shards.local_pool_size); the fault lines."""
    if not jobs:
        return []
    nj = local_pool_size(nj, len(jobs), "speed_perturb")
    with ProcessPoolExecutor(max_workers=nj) as pool:
        return [f for f in pool.map(perturb_one, jobs, chunksize=max(1, len(jobs) // (4 * nj))) if f]


def perturb_archives(jobs: list[PerturbJob], stage: Path, final: Path, options: ArchiveOptions) -> dict[str, str]:
    """Write the jobs' audio into ``options.nj`` archives under ``stage`` (read from ``final``), one job each
    through ``options.cmd``; utterance id -> its wav.scp value. DataDirError lists the faults."""
    tasks = [{"audio_format": options.audio_format, "archive": str(stage / f"wav.{j}.ark"),
              "final": str(final / f"wav.{j}.ark"), "items": [[job.uttid, str(job.src), job.factor] for job in shard]}
             for j, shard in enumerate(split(jobs, options.nj), start=1)]
    work_dir = stage.parent / ".shards"
    log = str((options.log_dir or final.parent.parent / "log") / f"speed_perturb_{final.parent.name}.JOB.log")
    try:
        shards = run_shards(perturb_shard, tasks, work_dir, log, options.cmd) if jobs else []
    except ShardError as e:
        raise DataDirError([str(e)]) from None
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    results = [result for shard in shards for result in shard]
    faults = [r["fault"] for r in results if "fault" in r]
    if faults:
        raise DataDirError(faults)
    return {r["uttid"]: r["path"] for r in results}


def prefixed(factor: str, key: str) -> str:
    """``sp<factor>-<key>``, ESPnet/Kaldi's id of a perturbed copy."""
    return f"sp{factor}-{key}"


def output_format(audio_format: str) -> str:
    """What speed perturbation writes for asr.sh's --audio_format: the archive format, else FLAC files."""
    return audio_format if is_archive_format(audio_format) else "flac"


def is_current(src: Path, dst: Path, factors: list[str], audio_format: str = "flac") -> bool:
    """Whether ``dst`` was made from ``src``'s current files with ``factors`` into ``audio_format``."""
    stamp, made_as = dst / FACTORS_FILE, dst / FORMAT_FILE
    if not (stamp.is_file() and (dst / "wav.scp").is_file()) or stamp.read_text().split() != factors:
        return False
    if (made_as.read_text().strip() if made_as.is_file() else "flac") != audio_format:
        return False
    made = (dst / "wav.scp").stat().st_mtime
    return all(p.stat().st_mtime <= made for p in src.iterdir() if p.is_file())


def speed_perturb(src: Path, dst: Path, factors: list[str], nj: int = 1,
                  archives: ArchiveOptions | None = None) -> bool:
    """Write the perturbed copy of data dir ``src`` to ``dst``; False when it was current already.

    ``archives`` (with an archive format) writes the audio into archives instead of FLAC files (its ``nj``
    jobs; ``nj`` is for the files). DataDirError lists the faults (of the source dir or its audio)."""
    for factor in factors:
        parse_factor(factor)
    if len(set(factors)) != len(factors):
        raise ValueError(f"speed factors repeat: {factors}")
    archives = archives or ArchiveOptions()
    audio_format = output_format(archives.audio_format)
    if is_current(src, dst, factors, audio_format):
        return False
    source = read_source(src)
    if source.faults:
        raise DataDirError(source.faults)
    dst = dst.absolute()
    wav_scp: dict[str, object] = {}
    text: dict[str, str] = {}
    utt2spk: dict[str, str] = {}
    with atomic_dir(dst) as tmp:
        jobs = []
        for factor in factors:
            same = parse_factor(factor) == 1
            for uttid, path in sorted(source.wav_scp.items()):
                new = uttid if same else prefixed(factor, uttid)
                text[new] = source.text[uttid]
                utt2spk[new] = source.utt2spk[uttid] if same else prefixed(factor, source.utt2spk[uttid])
                if same:
                    wav_scp[new] = Path(path).absolute()
                else:
                    jobs.append(PerturbJob(new, Path(path).absolute(), factor, tmp / "audio" / f"{new}.flac"))
                    wav_scp[new] = dst / "audio" / f"{new}.flac"
        if is_archive_format(audio_format):
            wav_scp.update(perturb_archives(jobs, tmp / "audio", dst / "audio", archives))
        else:
            faults = perturb_files(jobs, nj)
            if faults:
                raise DataDirError(faults)
        write_table(tmp / "wav.scp", wav_scp)
        write_table(tmp / "text", text)
        write_table(tmp / "utt2spk", utt2spk)
        write_table(tmp / "spk2utt", spk2utt(utt2spk))
        (tmp / FACTORS_FILE).write_text(" ".join(factors) + "\n")
        (tmp / FORMAT_FILE).write_text(audio_format + "\n")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="Kaldi data dir to perturb")
    parser.add_argument("--dst", type=Path, required=True, help="data dir to write (ESPnet: <src>_sp)")
    parser.add_argument("--factors", nargs="+", required=True, help='speed factors, e.g. "0.9 1.0 1.1"')
    parser.add_argument("--nj", type=int, default=1, help="parallel processes, or jobs writing archives")
    parser.add_argument("--audio_format", choices=tuple(AUDIO_FORMATS), default="flac",
                        help="wav.ark, flac.ark: archives (ESPnet's kaldi_ark); wav, flac: FLAC files")
    parser.add_argument("--cmd", default=None, help="the job command archives are written through, one job each "
                                                    "(cmd.sh's ${train_cmd}; default: processes on this machine)")
    parser.add_argument("--log_dir", type=Path, default=None,
                        help="the archive jobs' logs: speed_perturb_<dst name>.<j>.log (default <dst>/../log)")
    args = parser.parse_args(argv)
    archives = ArchiveOptions(args.audio_format, args.nj, args.cmd, args.log_dir and args.log_dir.absolute())

    def work() -> str:
        made = speed_perturb(args.src, args.dst, args.factors, args.nj, archives)
        return f"{'wrote' if made else 'up to date:'} {args.dst} (factors {' '.join(args.factors)})"

    return report("speed_perturb", work)


if __name__ == "__main__":
    sys.exit(main())
