"""Stage 2 into archives (--audio_format wav.ark / flac.ark): nj shards written by jobs through the job
backend, read back by ESPnet's own loader sample for sample as the per-file output; faults, lengths, speed
perturbation into archives, and asr.sh's choice of data type."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from espnet2.train.dataset import DATA_TYPES

from echo_plugin.inference.audio import AudioError
from echo_plugin.recipe import audio_archive, format_data, speed_perturb
from echo_plugin.recipe.audio_archive import ArchiveWriter, read_entry
from test.recipe.recipe_helpers import FSDD, TINY_CONFIG, copy_recipe, recipe_env

UTTS = ["0_george_0", "1_jackson_1", "2_lucas_2", "3_nicolas_3", "4_yweweler_4", "5_george_5"]
LAUNCH = f"{sys.executable} -m echo_plugin.recipe.launch --backend local"


def table(path: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def espnet_read(data_dir: Path) -> dict[str, np.ndarray]:
    """Every utterance as ESPnet's data loader reads it, with the type asr.sh gives the set."""
    kind = audio_archive.data_type((data_dir / "audio_format").read_text().strip())
    loader = DATA_TYPES[kind]["func"](str(data_dir / "wav.scp"))
    return {key: loader[key] for key in loader}


@pytest.fixture
def src(tmp_path: Path) -> Path:
    """A data dir over six FSDD recordings (8 kHz PCM-16 wav)."""
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    (data / "wav.scp").write_text("".join(f"{u} {FSDD / 'recordings' / u}.wav\n" for u in UTTS))
    (data / "text").write_text("".join(f"{u} {u.split('_')[0]}\n" for u in UTTS))
    (data / "utt2spk").write_text("".join(f"{u} {u.split('_')[1]}\n" for u in UTTS))
    return data


def run(src: Path, dst: Path, *extra: str) -> int:
    return format_data.main(["--src", str(src), "--dst", str(dst), "--fs", "8000", "--nj", "2", *extra])


@pytest.mark.parametrize("audio_format", ["flac.ark", "wav.ark"])
def test_archives_read_back_sample_exact_as_the_files(src: Path, tmp_path: Path, audio_format: str) -> None:
    files, archives = tmp_path / "dump" / "files", tmp_path / "dump" / "archives"
    assert run(src, files) == 0
    assert run(src, archives, "--audio_format", audio_format, "--cmd", LAUNCH, "--log_dir", str(tmp_path / "log")) == 0
    wav_scp = table(archives / "wav.scp")
    assert {v.rpartition(":")[0] for v in wav_scp.values()} == {str(archives / "data" / f"wav.{j}.ark") for j in (1, 2)}
    assert sorted(p.name for p in (archives / "data").iterdir()) == ["wav.1.ark", "wav.2.ark"]  # nj shards
    assert (archives / "audio_format").read_text() == f"{audio_format}\n"
    assert table(archives / "utt2num_samples") == table(files / "utt2num_samples")
    assert table(archives / "text") == table(files / "text")
    by_file, by_archive = espnet_read(files), espnet_read(archives)
    assert sorted(by_archive) == UTTS
    for utt in UTTS:
        assert by_archive[utt].dtype == by_file[utt].dtype and np.array_equal(by_archive[utt], by_file[utt]), utt
    for j in (1, 2):  # one job each, through the launcher
        assert "# Ended (code 0)" in (tmp_path / "log" / f"format_archives.{j}.log").read_text()
    assert not list(archives.parent.glob(".*")), "temporary dirs left behind"


def test_resampled_archives_hold_what_the_converted_files_hold(src: Path, tmp_path: Path) -> None:
    files, archives = tmp_path / "files", tmp_path / "archives"
    common = ["--src", str(src), "--fs", "16000", "--nj", "1"]
    assert format_data.main([*common, "--dst", str(files), "--audio_format", "flac"]) == 0
    assert format_data.main([*common, "--dst", str(archives), "--audio_format", "flac.ark"]) == 0
    assert all(v.endswith(".flac") for v in table(files / "wav.scp").values())
    assert len({v.rpartition(":")[0] for v in table(archives / "wav.scp").values()}) == 1  # nj 1: one archive
    by_file, by_archive = espnet_read(files), espnet_read(archives)
    assert all(np.array_equal(by_archive[u], by_file[u]) and len(by_file[u]) > 0 for u in UTTS)


def test_faults_name_utterance_and_file_and_leave_the_old_output(src: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "dump" / "train"
    assert run(src, dst, "--audio_format", "flac.ark") == 0
    before = {p: p.read_bytes() for p in sorted(dst.rglob("*")) if p.is_file()}
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    lines = (src / "wav.scp").read_text().splitlines()
    lines[1] = f"{UTTS[1]} {tmp_path / 'missing.wav'}"
    lines[4] = f"{UTTS[4]} {broken}"
    (src / "wav.scp").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert run(src, dst, "--audio_format", "flac.ark") == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"format_data: error: {src / 'wav.scp'}: utterance '{UTTS[1]}': missing audio file " \
                     f"{tmp_path / 'missing.wav'}"
    assert err[1].startswith(f"format_data: error: {src / 'wav.scp'}: utterance '{UTTS[4]}': unreadable audio file")
    assert len(err) == 2
    assert {p: p.read_bytes() for p in sorted(dst.rglob("*")) if p.is_file()} == before
    assert not list(dst.parent.glob(".*"))


def test_a_failed_job_stops_the_stage_naming_its_logs(src: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "dump" / "train"
    assert run(src, dst, "--audio_format", "wav.ark", "--cmd", "false", "--log_dir", str(tmp_path / "log")) == 1
    err = capsys.readouterr().err
    assert "format_data: error: 2 job(s) of echo_plugin.recipe.format_data:format_shard: one failed" in err
    assert str(tmp_path / "log" / "format_train.JOB.log") in err
    assert not dst.exists() and not list(dst.parent.glob(".*"))


def test_lengths_are_dropped_from_archives_too(src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dump" / "train"
    assert run(src, dst, "--audio_format", "flac.ark", "--length_policy", "drop", "--max_duration", "0.4") == 0
    dropped = table(dst / "dropped")
    durations = {u: len(x) / 8000 for u, x in espnet_read(dst).items()}
    assert dropped and all(d <= 0.4 for d in durations.values())
    assert sorted([*dropped, *durations]) == UTTS


def test_speed_perturbation_into_archives_that_stage_2_keeps_in_place(src: Path, tmp_path: Path) -> None:
    as_files, as_archives = tmp_path / "data" / "train_sp_files", tmp_path / "data" / "train_sp"
    assert speed_perturb.speed_perturb(src, as_files, ["0.9", "1.0", "1.1"], nj=2)
    options = speed_perturb.ArchiveOptions("flac.ark", nj=2, cmd=LAUNCH, log_dir=tmp_path / "log")
    assert speed_perturb.speed_perturb(src, as_archives, ["0.9", "1.0", "1.1"], archives=options)
    assert not speed_perturb.speed_perturb(src, as_archives, ["0.9", "1.0", "1.1"], archives=options)  # current
    assert speed_perturb.is_current(src, as_files, ["0.9", "1.0", "1.1"], "flac")
    assert not speed_perturb.is_current(src, as_files, ["0.9", "1.0", "1.1"], "flac.ark")  # another format
    wav = table(as_archives / "wav.scp")
    assert wav[UTTS[0]] == str(FSDD / "recordings" / f"{UTTS[0]}.wav")  # factor 1: the source itself
    perturbed = {u: v for u, v in wav.items() if u.startswith("sp")}
    assert len(perturbed) == 12 and {v.rpartition(":")[0] for v in perturbed.values()} == {
        str(as_archives / "audio" / f"wav.{j}.ark") for j in (1, 2)}
    assert (tmp_path / "log" / "speed_perturb_train_sp.2.log").is_file()
    for utt, value in perturbed.items():  # the same samples as the FLAC files of the per-file mode
        assert np.array_equal(read_entry(value)[0], read_entry(table(as_files / "wav.scp")[utt])[0]), utt
    dump = tmp_path / "dump" / "train_sp"
    assert run(as_archives, dump, "--audio_format", "flac.ark") == 0
    formatted = table(dump / "wav.scp")
    assert all(formatted[u] == v for u, v in perturbed.items())  # archive entries at --fs: kept in place
    assert formatted[UTTS[0]].startswith(str(dump / "data" / "wav.1.ark:"))  # a file: archived
    assert sorted(espnet_read(dump)) == sorted(wav)


def test_archive_entries_read_with_kaldi_ranges_and_bad_ones_are_named(tmp_path: Path) -> None:
    tone = (0.1 * np.sin(np.arange(800) / 3.0)).astype(np.float32)
    archive = tmp_path / "a.ark"
    with ArchiveWriter(archive, archive, "wav.ark") as writer:
        first, second = writer.write("u1", tone, 8000), writer.write("u2", tone[:400], 8000)
    samples, rate = read_entry(first)
    assert samples.shape == (800, 1) and rate == 8000
    assert np.allclose(samples[:, 0], tone, atol=1 / 32768)  # 16-bit PCM
    assert np.array_equal(read_entry(f"{first}[10:19]")[0], samples[10:20])  # Kaldi's range: both ends included
    assert np.array_equal(read_entry(Path(second))[0], read_entry(second)[0][:400])  # a Path of an entry too
    for value, words in [
        (f"{tmp_path / 'b.ark'}:3", f"missing audio archive {tmp_path / 'b.ark'} (entry {tmp_path / 'b.ark'}:3)"),
        (f"{archive}:0", f"unreadable archive entry {archive}:0: "),
        (f"{archive}:99999", f"archive entry {archive}:99999: offset 99999 is past the end of {archive} ("),
        (f"{first}[790:800]", f"archive entry {first}[790:800]: range [790:800] is outside its 800 samples"),
        (f"{first}[5]", f"archive entry {first}[5]: range [5] is not [<first sample>:<last sample>]"),
    ]:
        with pytest.raises(AudioError) as error:
            read_entry(value)
        assert str(error.value).startswith(words) and "\n" not in str(error.value), (value, str(error.value))
    cut = tmp_path / "cut.ark"
    cut.write_bytes(archive.read_bytes()[:-100])  # the second entry loses its last 100 bytes
    assert read_entry(f"{cut}:{first.rpartition(':')[2]}")[0].shape == (800, 1)  # the first is whole
    with pytest.raises(AudioError, match=rf"truncated archive entry {cut}:\d+: it declares \d+ bytes, the archive "
                                         r"holds \d+"):
        read_entry(f"{cut}:{second.rpartition(':')[2]}")


def test_asr_sh_takes_an_archive_format_with_every_step(tmp_path: Path) -> None:
    """The steps once refused with archives (they read stage 2's audio through the one reader, which reads
    archive entries now) pass asr.sh's option checks; an unknown format is still refused."""
    root = copy_recipe(tmp_path)
    done = subprocess.run(["./asr.sh", "--asr_config", TINY_CONFIG, "--stage", "9", "--ngpu", "0", "--nj", "1",
                           "--inference_nj", "1", "--audio_format", "flac.ark", "--speaker_adapt", "true",
                           "--feats_normalize", "speaker_mvn", "--feature_cache", "pitch", "--babble", "true",
                           "--snr_test_sets", "clean 10", "--score_deployed", "true"],
                          cwd=root, env=recipe_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Successfully finished stages 9-100" in done.stdout
    done = subprocess.run(["./asr.sh", "--asr_config", TINY_CONFIG, "--stage", "9", "--audio_format", "mp3"],
                          cwd=root, env=recipe_env(), capture_output=True, text=True)
    assert done.returncode == 1 and "--audio_format must be wav, flac, wav.ark or flac.ark: mp3" in done.stderr
    shutil.rmtree(root)


def test_a_plain_wav_entry_reads_as_its_file_does(tmp_path: Path) -> None:
    """Kaldi's wav-copy (and kaldiio's default writer of (rate, int16)) put the WAV file itself into the
    archive: it reads to the samples the file gives, in [-1, 1), and a cut-off one is named."""
    import kaldiio
    import soundfile as sf

    wav = FSDD / "recordings" / "3_lucas_7.wav"
    pcm, rate = sf.read(wav, dtype="int16")
    archive, scp = tmp_path / "k.ark", tmp_path / "k.scp"
    with kaldiio.WriteHelper(f"ark,scp:{archive},{scp}") as writer:
        writer("u1", (rate, pcm))
    entry = scp.read_text().split()[1]
    assert archive.read_bytes()[3:7] == b"RIFF"
    samples, got_rate = read_entry(entry)
    from_file, _ = sf.read(wav, dtype="float32", always_2d=True)
    assert got_rate == rate and samples.dtype == np.float32 and np.array_equal(samples, from_file)
    cut = tmp_path / "cut.ark"
    cut.write_bytes(archive.read_bytes()[:-50])
    with pytest.raises(AudioError, match=rf"truncated archive entry {cut}:3: it declares \d+ bytes"):
        read_entry(f"{cut}:3")
