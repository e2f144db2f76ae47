"""Stage 2: validate a Kaldi data dir and write its formatted copy.

    python -m echo_plugin.recipe.format_data --src data/train --dst dump/raw/train \
        --fs 8000 [--resample true] [--max_duration 30] [--min_duration 0.0] \
        [--nj 2] [--audio_dir DIR] [--audio_format wav|flac|wav.ark|flac.ark] [--cmd "${train_cmd}"]

Reads ``<src>/wav.scp`` and ``<src>/text`` (required) and ``<src>/utt2spk``
(optional: without it each utterance is its own speaker). ``segments`` and
piped ``wav.scp`` entries (``cmd |``) are rejected as unsupported.

Audio is read with soundfile (libsndfile: wav, flac, mp3, ogg, ...), or from
an archive entry ``<file>.ark:<offset>`` (:mod:`echo_plugin.recipe.audio_archive`).
Relative paths in wav.scp are taken from the current dir.
Multi-channel audio is downmixed to mono (the channel mean). With ``--audio_format``
``wav`` (the default) or ``flac`` there is one file per utterance: a file is
referenced in place (absolute path) when it is a mono wav or flac at ``--fs``;
any other (another rate, several channels, mp3, ogg, an archive entry, ...) is converted
to a 16-bit PCM mono file at ``--fs`` in that format named ``<uttid>.wav`` (``.flac``) under
``<dst>/data/`` (or ``--audio_dir``). With ``--resample false`` a rate other
than ``--fs`` is a fault instead.

With ``--audio_format wav.ark`` or ``flac.ark`` (large corpora: a few big files instead of
one per utterance) every utterance is written, 16-bit PCM mono at ``--fs``, into
archives ``<dst>/data/wav.<j>.ark`` that ESPnet reads natively (data type ``kaldi_ark``), an
archive entry of the right rate excepted (referenced in place: speed perturbation writes
archives too). The ``--nj`` archives are written by ``--nj`` jobs through ``--cmd`` (asr.sh
gives cmd.sh's ``${train_cmd}``: local processes or a Slurm job array; default: local), each
logging to ``<log_dir>/format_<dst name>.<j>.log`` (``--log_dir``, default ``<dst>/../log``).

Every fault (missing, unreadable, empty or cut-off audio, a wrong rate,
an empty transcript, a duplicate id, ids in one file but not another) is
printed on its own line naming the file and the utterance id; after 20 faults
checking stops. On any fault the command exits 1 and ``--dst`` is left as it was.

A duration outside [--min_duration, --max_duration] is handled by
``--length_policy`` as ESPnet's recipes do: ``drop`` (training and validation
sets) leaves the utterance out and lists it, with its duration and why, in
``<dst>/dropped``; ``keep`` (test sets: never filtered, every utterance is
scored) checks no length; ``refuse`` makes it a fault.

Writes, sorted by utterance id in byte order, in a temporary sibling renamed
over ``--dst`` at the end: wav.scp, text, utt2spk, spk2utt, utt2dur (seconds,
3 decimals) and utt2num_samples; and ``audio_format`` (as ESPnet's dump dirs: the
stages after read their data type from it).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from espnet2.utils.types import str2bool

from echo_plugin.inference.audio import AudioError
from echo_plugin.recipe.audio_archive import (
    AUDIO_FORMATS,
    ArchiveWriter,
    is_archive_entry,
    is_archive_format,
    read_entry,
    write_audio_file,
)
from echo_plugin.recipe.cli import report
from echo_plugin.recipe.data_dir import (
    MAX_FAULTS,
    DataDirError,
    fault,
    read_table_faults,
    spk2utt,
    write_table,
)
from echo_plugin.recipe.io import atomic_dir
from echo_plugin.recipe.shards import ShardError, local_pool_size, run_shards, split

IN_PLACE_SUFFIXES = {".wav", ".flac"}


@dataclass(frozen=True)
class AudioSpec:
    """What the formatted audio must be and where converted files go."""

    fs: int
    resample: bool
    min_duration: float
    max_duration: float
    length_policy: str  # refuse | drop | keep (module docstring)
    stage_dir: Path  # converted files are written here while building
    final_dir: Path  # ... and are found here once --dst is in place
    audio_format: str = "wav"  # of the converted files or archives (audio_archive.AUDIO_FORMATS)

    def to_json(self) -> dict:
        return {**self.__dict__, "stage_dir": str(self.stage_dir), "final_dir": str(self.final_dir)}

    @classmethod
    def from_json(cls, data: dict) -> AudioSpec:
        return cls(**{**data, "stage_dir": Path(data["stage_dir"]), "final_dir": Path(data["final_dir"])})


@dataclass(frozen=True)
class AudioJob:
    """One wav.scp entry to check (and convert when needed)."""

    uttid: str
    path: Path
    scp: Path
    spec: AudioSpec


@dataclass(frozen=True)
class AudioEntry:
    """The formatted audio of one utterance."""

    uttid: str
    path: Path | str  # a file, or an archive entry <file>.ark:<offset>
    num_samples: int


@dataclass(frozen=True)
class Dropped:
    """An utterance left out for its length (``--length_policy drop``)."""

    uttid: str
    reason: str


@dataclass
class SourceDir:
    """The tables of a source data dir and the faults found reading them."""

    wav_scp: dict[str, str]
    text: dict[str, str]
    utt2spk: dict[str, str]
    faults: list[str]


def read_into(path: Path, faults: list[str], required: bool) -> dict[str, str] | None:
    """The table at ``path`` (None when absent); its faults are added to ``faults``."""
    if not path.is_file():
        if required:
            faults.append(f"{path}: required file is missing")
        return None
    table, duplicates = read_table_faults(path)
    faults.extend(duplicates)
    return table


def cross_check(a: dict[str, str], a_path: Path, b: dict[str, str], b_path: Path) -> list[str]:
    """Faults for ids listed in one of two tables but not in the other."""
    return [fault(a_path, u, f"missing (listed in {b_path})") for u in sorted(b.keys() - a.keys())] + [
        fault(b_path, u, f"missing (listed in {a_path})") for u in sorted(a.keys() - b.keys())
    ]


def content_faults(src: Path, source: SourceDir) -> list[str]:
    """Faults in the values: empty transcripts and speakers, pipes, ids unusable as file names."""
    wav_scp = source.wav_scp
    return (
        [fault(src / "text", u, "empty transcript") for u in sorted(source.text) if not source.text[u]]
        + [fault(src / "utt2spk", u, "empty speaker id") for u in sorted(source.utt2spk) if not source.utt2spk[u]]
        + [
            fault(src / "wav.scp", u, f"piped command '{wav_scp[u]}' is unsupported; write the audio to a file")
            for u in sorted(wav_scp)
            if wav_scp[u].endswith("|")
        ]
        + [fault(src / "wav.scp", u, "utterance id contains '/'") for u in sorted(wav_scp) if "/" in u]
    )


def read_source(src: Path) -> SourceDir:
    """Read and cross-check wav.scp, text and utt2spk of ``src``."""
    faults: list[str] = []
    if (src / "segments").exists():
        faults.append(f"{src / 'segments'}: segments files are unsupported; cut the audio into files first")
    wav_scp = read_into(src / "wav.scp", faults, required=True)
    text = read_into(src / "text", faults, required=True)
    utt2spk = read_into(src / "utt2spk", faults, required=False)
    if wav_scp is not None and text is not None:
        faults += cross_check(wav_scp, src / "wav.scp", text, src / "text")
    if wav_scp is not None and utt2spk is not None:
        faults += cross_check(wav_scp, src / "wav.scp", utt2spk, src / "utt2spk")
    wav_scp = wav_scp or {}
    if utt2spk is None:
        utt2spk = {uttid: uttid for uttid in wav_scp}
    source = SourceDir(wav_scp, text or {}, utt2spk, faults)
    source.faults += content_faults(src, source)
    return source


def check_rate_and_duration(job: AudioJob, num_samples: int, rate: int) -> str | None:
    """AudioError when the rate may not be converted (or, with ``refuse``, the duration is out of range);
    with ``drop``, why the utterance is left out, else None."""
    spec = job.spec
    if rate != spec.fs and not spec.resample:
        raise AudioError(f"sample rate {rate} Hz of {job.path} is not --fs {spec.fs} (and --resample false)")
    if spec.length_policy == "keep":
        return None
    duration = num_samples / rate
    problem = None
    if duration > spec.max_duration:
        problem = f"too long: {duration:.3f} s > --max_duration {spec.max_duration}"
    elif duration < spec.min_duration:
        problem = f"too short: {duration:.3f} s < --min_duration {spec.min_duration}"
    if problem is not None and spec.length_policy == "refuse":
        raise AudioError(f"audio {job.path} is {problem}")
    return problem


def resample(samples: np.ndarray, rate: int, fs: int) -> np.ndarray:
    """Mono ``samples`` at ``rate`` resampled to ``fs`` with torchaudio."""
    if rate == fs:
        return samples
    import torch  # deferred: only conversions pay for importing torch
    import torchaudio.functional as F

    torch.set_num_threads(1)  # one thread per worker process, as DataLoader workers do (fork-safe)
    return F.resample(torch.from_numpy(samples), rate, fs).numpy()


def write_wav(samples: np.ndarray, fs: int, path: Path) -> None:
    """Write mono ``samples`` as a 16-bit PCM wav (for noise.py and snr_sets.py)."""
    write_audio_file(samples, fs, path, "wav")


def usable_in_place(job: AudioJob, rate: int, channels: int) -> bool:
    """Whether the source file can be referenced as it is."""
    return rate == job.spec.fs and channels == 1 and job.path.suffix.lower() in IN_PLACE_SUFFIXES


def read_checked(job: AudioJob) -> tuple[np.ndarray, int] | Dropped | str:
    """One utterance's audio (frames x channels) and rate once they pass the checks; Dropped when it is
    left out for its length, a fault line when it is unusable."""
    try:
        data, rate = read_entry(job.path)
        dropped = check_rate_and_duration(job, len(data), rate)
    except AudioError as e:
        return fault(job.scp, job.uttid, str(e))
    if dropped is not None:
        return Dropped(job.uttid, dropped)
    return data, rate


def process_audio(job: AudioJob) -> AudioEntry | Dropped | str:
    """Check one utterance's audio, converting it to a file when needed; a fault line on failure."""
    checked = read_checked(job)
    if not isinstance(checked, tuple):
        return checked
    data, rate = checked
    if usable_in_place(job, rate, data.shape[1]):
        return AudioEntry(job.uttid, job.path, len(data))
    converted = resample(data.mean(axis=1), rate, job.spec.fs)
    name = f"{job.uttid}.{job.spec.audio_format}"
    write_audio_file(converted, job.spec.fs, job.spec.stage_dir / name, job.spec.audio_format)
    return AudioEntry(job.uttid, job.spec.final_dir / name, len(converted))


def archive_audio(job: AudioJob, archive: ArchiveWriter) -> AudioEntry | Dropped | str:
    """Check one utterance's audio and append it to ``archive`` (an archive entry that is mono at --fs
    already is referenced in place); a fault line on failure."""
    checked = read_checked(job)
    if not isinstance(checked, tuple):
        return checked
    data, rate = checked
    if is_archive_entry(job.path) and rate == job.spec.fs and data.shape[1] == 1:
        return AudioEntry(job.uttid, job.path, len(data))
    converted = resample(data.mean(axis=1), rate, job.spec.fs)
    return AudioEntry(job.uttid, archive.write(job.uttid, converted, job.spec.fs), len(converted))


def format_shard(task: dict) -> list[dict]:
    """One job of the archive formats: its utterances (``task["items"]``: [uttid, source]) into one archive.

    Returns one result per utterance, ``{"uttid", "path", "num_samples"}``, ``{"uttid", "dropped"}`` or
    ``{"fault"}``; it stops after ``task["max_faults"]`` faults."""
    spec = AudioSpec.from_json(task["spec"])
    results: list[dict] = []
    faults = 0
    with ArchiveWriter(Path(task["archive"]), Path(task["final"]), spec.audio_format) as archive:
        for uttid, path in task["items"]:
            result = archive_audio(AudioJob(uttid, Path(path), Path(task["scp"]), spec), archive)
            if isinstance(result, str):
                results.append({"fault": result})
                faults += 1
                if faults >= task["max_faults"]:
                    break
            elif isinstance(result, Dropped):
                results.append({"uttid": uttid, "dropped": result.reason})
            else:
                results.append({"uttid": uttid, "path": str(result.path), "num_samples": result.num_samples})
    return results


def archive_all(jobs: list[AudioJob], nj: int, max_faults: int, cmd: str | None, log_dir: Path,
                name: str) -> tuple[list[AudioEntry | Dropped], list[str]]:
    """Write every job's audio into ``nj`` archives, one job each through ``cmd`` (format_shard)."""
    if not jobs or max_faults <= 0:
        return [], []
    spec = jobs[0].spec
    tasks = [{"spec": spec.to_json(), "scp": str(shard[0].scp), "max_faults": max_faults,
              "archive": str(spec.stage_dir / f"wav.{j}.ark"), "final": str(spec.final_dir / f"wav.{j}.ark"),
              "items": [[job.uttid, str(job.path)] for job in shard]}
             for j, shard in enumerate(split(jobs, nj), start=1)]
    work_dir = spec.stage_dir.parent / ".shards"
    try:
        shards = run_shards(format_shard, tasks, work_dir, str(log_dir / f"format_{name}.JOB.log"), cmd)
    except ShardError as e:
        raise DataDirError([str(e)]) from None
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    results = [result for shard in shards for result in shard]
    faults = [r["fault"] for r in results if "fault" in r][:max_faults]
    entries: list[AudioEntry | Dropped] = [
        Dropped(r["uttid"], r["dropped"]) if "dropped" in r else AudioEntry(r["uttid"], r["path"], r["num_samples"])
        for r in results if "fault" not in r
    ]
    return entries, faults


def check_audio(jobs: list[AudioJob], nj: int, max_faults: int) -> tuple[list[AudioEntry | Dropped], list[str]]:
    """Run process_audio over ``nj`` local processes (at most this machine's cores: shards.local_pool_size);
    stops once ``max_faults`` faults are found."""
    entries: list[AudioEntry | Dropped] = []
    faults: list[str] = []
    if not jobs or max_faults <= 0:
        return entries, faults
    nj = local_pool_size(nj, len(jobs), "format_data")
    with ProcessPoolExecutor(max_workers=nj) as pool:
        try:
            for result in pool.map(process_audio, jobs, chunksize=max(1, len(jobs) // (4 * nj))):
                if isinstance(result, str):
                    faults.append(result)
                    if len(faults) >= max_faults:
                        break
                else:
                    entries.append(result)
        finally:
            pool.shutdown(cancel_futures=True)
    return entries, faults


def audio_jobs(source: SourceDir, scp: Path, spec: AudioSpec) -> list[AudioJob]:
    """One job per wav.scp entry whose path is a file name (not a pipe)."""
    return [
        AudioJob(uttid, Path(value).absolute(), scp, spec)
        for uttid, value in sorted(source.wav_scp.items())
        if not value.endswith("|")
    ]


def publish_audio(stage_dir: Path, audio_dir: Path) -> None:
    """Move the converted files from ``stage_dir`` into ``audio_dir``."""
    if not stage_dir.is_dir():
        return
    audio_dir.mkdir(parents=True, exist_ok=True)
    for wav in stage_dir.iterdir():
        shutil.move(wav, audio_dir / wav.name)
    stage_dir.rmdir()


def write_outputs(out: Path, source: SourceDir, results: list[AudioEntry | Dropped], fs: int,
                  audio_format: str = "wav") -> int:
    """Write the formatted data-dir files into ``out`` (and ``dropped``, when some were); how many were dropped."""
    entries = [e for e in results if isinstance(e, AudioEntry)]
    dropped = {d.uttid: d.reason for d in results if isinstance(d, Dropped)}
    kept = {e.uttid for e in entries}
    utt2spk = {u: s for u, s in source.utt2spk.items() if u in kept}
    write_table(out / "wav.scp", {e.uttid: e.path for e in entries})
    write_table(out / "text", {u: t for u, t in source.text.items() if u in kept})
    write_table(out / "utt2spk", utt2spk)
    write_table(out / "spk2utt", spk2utt(utt2spk))
    if dropped:
        write_table(out / "dropped", dropped)
    write_table(out / "utt2dur", {e.uttid: f"{e.num_samples / fs:.3f}" for e in entries})
    write_table(out / "utt2num_samples", {e.uttid: e.num_samples for e in entries})
    (out / "audio_format").write_text(f"{audio_format}\n", encoding="utf-8")
    return len(dropped)


def format_data(args: argparse.Namespace) -> None:
    """Validate ``args.src`` and write ``args.dst``; DataDirError lists the faults."""
    source = read_source(args.src)
    dst = args.dst.absolute()
    with atomic_dir(dst) as tmp:
        final_dir = (args.audio_dir or dst / "data").absolute()
        spec = AudioSpec(args.fs, args.resample, args.min_duration, args.max_duration, args.length_policy,
                         tmp / "data", final_dir, args.audio_format)
        jobs = audio_jobs(source, args.src / "wav.scp", spec)
        # one more than reported, so report_faults can tell that it stopped early
        max_faults = MAX_FAULTS + 1 - len(source.faults)
        if is_archive_format(args.audio_format):
            log_dir = (args.log_dir or dst.parent / "log").absolute()
            entries, faults = archive_all(jobs, args.nj, max_faults, args.cmd, log_dir, dst.name)
        else:
            entries, faults = check_audio(jobs, args.nj, max_faults)
        if source.faults or faults:
            raise DataDirError(source.faults + faults)
        if args.audio_dir is not None:
            publish_audio(spec.stage_dir, final_dir)
        dropped = write_outputs(tmp, source, entries, args.fs, args.audio_format)
    if dropped:  # named in place: the files were written in a temporary sibling
        print(f"format_data: left out {dropped} utterance(s) for their length (listed in {args.dst}/dropped)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, required=True, help="Kaldi data dir to read")
    parser.add_argument("--dst", type=Path, required=True, help="formatted data dir to write")
    parser.add_argument("--fs", type=int, required=True, help="sample rate of the output audio (Hz)")
    parser.add_argument("--resample", type=str2bool, default=True, help="convert other rates to --fs")
    parser.add_argument("--max_duration", type=float, default=30.0, help="longest utterance allowed (s)")
    parser.add_argument("--min_duration", type=float, default=0.0, help="shortest utterance allowed (s)")
    parser.add_argument("--length_policy", choices=("refuse", "drop", "keep"), default="refuse",
                        help="an utterance outside the durations: a fault, left out (listed in <dst>/dropped), "
                             "or kept unchecked (test sets)")
    parser.add_argument("--nj", type=int, default=2, help="parallel processes for the audio")
    parser.add_argument("--audio_dir", type=Path, default=None,
                        help="where converted audio or archives go (default <dst>/data)")
    parser.add_argument("--audio_format", choices=tuple(AUDIO_FORMATS), default="wav",
                        help="one file per utterance (wav, flac: the format of converted files) or archives of "
                             "every utterance (wav.ark, flac.ark; ESPnet's data type kaldi_ark)")
    parser.add_argument("--cmd", default=None,
                        help="the job command the archives are written through, one job each, e.g. cmd.sh's "
                             "${train_cmd} (default: processes on this machine)")
    parser.add_argument("--log_dir", type=Path, default=None,
                        help="the archive jobs' logs: format_<dst name>.<j>.log (default <dst>/../log)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> str:
        format_data(args)
        return f"wrote {args.dst}"

    return report("format_data", work)


if __name__ == "__main__":
    sys.exit(main())
