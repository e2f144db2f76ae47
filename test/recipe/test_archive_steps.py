"""The steps that read stage 2's audio through the one reader (echo_plugin.inference.audio) give the same
results on an archive-format data dir (--audio_format flac.ark) as on the per-file one: speaker statistics
(speaker_mvn / speech_mvn), the feature cache, babble noise, SNR sets, and transcribe (stage 8's deployed path;
the speaker-adaptive pass reads through the same read_audio). A corrupted or cut-off archive entry stops a step
with one line naming the utterance and the entry."""
from __future__ import annotations

import shutil
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import yaml

from echo_plugin.features import cache
from echo_plugin.recipe import format_data, noise, snr_sets, speaker_stats
from test.recipe.recipe_helpers import FSDD

# two takes of george and lucas, one of the others: speakers with more than one utterance
UTTS = ["0_george_0", "1_george_1", "2_jackson_2", "3_lucas_3", "4_lucas_4", "5_nicolas_5", "6_yweweler_6"]
FRONTEND = {"frontend": "default",
            "frontend_conf": {"fs": 8000, "n_fft": 256, "win_length": 200, "hop_length": 80, "n_mels": 10}}


def table(path: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def files_under(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` by relative path, its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stage 2's output of one FSDD data dir, as wav files ("files") and as two flac archives ("archives")."""
    root = tmp_path_factory.mktemp("archive_steps")
    src = root / "data" / "test"
    src.mkdir(parents=True)
    (src / "wav.scp").write_text("".join(f"{u} {FSDD / 'recordings' / u}.wav\n" for u in UTTS))
    (src / "text").write_text("".join(f"{u} {'abcde'[int(u[0]) % 5]}\n" for u in UTTS))
    (src / "utt2spk").write_text("".join(f"{u} {u.split('_')[1]}\n" for u in UTTS))
    dumps = {"files": root / "dump" / "files", "archives": root / "dump" / "archives"}
    common = ["--src", str(src), "--fs", "8000", "--nj", "2"]
    assert format_data.main([*common, "--dst", str(dumps["files"])]) == 0
    assert format_data.main([*common, "--dst", str(dumps["archives"]), "--audio_format", "flac.ark"]) == 0
    assert all(":" in v and ".ark" in v for v in table(dumps["archives"] / "wav.scp").values())
    return dumps


def corrupted_copy(dumps: dict[str, Path], tmp_path: Path, utt: str, cut: bool = False) -> Path:
    """A copy of the archive dir whose entry of ``utt`` has its header overwritten (or, ``cut``, whose
    archive ends 100 bytes into that entry's audio)."""
    dst = tmp_path / "corrupt"
    shutil.copytree(dumps["archives"], dst)
    entries = {u: v.replace(str(dumps["archives"]), str(dst)) for u, v in table(dst / "wav.scp").items()}
    (dst / "wav.scp").write_text("".join(f"{u} {v}\n" for u, v in entries.items()))
    archive, _, offset = entries[utt].rpartition(":")
    data = bytearray(Path(archive).read_bytes())
    if cut:
        data = data[: int(offset) + 100]
    else:
        data[int(offset): int(offset) + 5] = b"XXXXX"  # the entry's "AUDIO" mark
    Path(archive).write_bytes(bytes(data))
    return dst


def test_speaker_statistics_from_archives_are_those_from_files(dumps: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(FRONTEND))
    out = {}
    for kind, data in dumps.items():
        out[kind] = tmp_path / kind
        assert speaker_stats.main(["--data_dir", str(data), "--config", str(config), "--out_dir", str(out[kind])]) == 0
    stats = sorted(p.name for p in (out["files"] / "stats").iterdir())
    assert stats == ["george.npy", "jackson.npy", "lucas.npy", "nicolas.npy", "yweweler.npy"]
    for name in stats:
        assert np.array_equal(np.load(out["files"] / "stats" / name), np.load(out["archives"] / "stats" / name)), name
    pooled = [np.load(out[kind] / "pooled_stats.npz") for kind in dumps]
    assert pooled[0]["count"] > 0 and all(np.array_equal(pooled[0][k], pooled[1][k]) for k in pooled[0].files)


def test_the_feature_cache_from_archives_is_the_one_from_files(dumps: dict[str, Path], tmp_path: Path) -> None:
    stored = {}
    for kind, data in dumps.items():
        assert cache.main(["--wav_scp", str(data / "wav.scp"), "--out_dir", str(tmp_path / kind), "--fs", "8000",
                           "--features", "pitch", "spectrogram"]) == 0
        stored[kind] = {f: dict(kaldiio.load_scp(str(tmp_path / kind / f"{f}.scp"))) for f in ("pitch", "spectrogram")}
    for feature, by_utt in stored["files"].items():
        assert sorted(by_utt) == sorted(UTTS)
        for utt, array in by_utt.items():
            assert np.array_equal(array, stored["archives"][feature][utt]), (feature, utt)


def test_babble_and_snr_sets_from_archives_are_those_from_files(dumps: dict[str, Path], tmp_path: Path) -> None:
    for kind, data in dumps.items():
        assert noise.main(["--train_dir", str(data), "--out_dir", str(tmp_path / kind / "noise"), "--fs", "8000",
                           "--babble", "true", "--n_babble", "2", "--babble_seconds", "1"]) == 0
        assert snr_sets.main(["--src", str(data), "--name", "test", "--out_dir", str(tmp_path / kind / "snr"),
                              "--fs", "8000", "--bands", "clean 10", "--noise", "pink"]) == 0
    babble = [files_under(tmp_path / kind / "noise" / "noise" / "babble") for kind in dumps]
    assert len(babble[0]) == 2 and babble[0] == babble[1]
    noisy = [files_under(tmp_path / kind / "snr" / "test_snr10" / "wav") for kind in dumps]
    assert len(noisy[0]) == len(UTTS) and noisy[0] == noisy[1]
    # the clean band lists the archive entries themselves, which stage 2 keeps in place
    clean = tmp_path / "archives" / "snr" / "test_clean"
    assert table(clean / "wav.scp") == table(dumps["archives"] / "wav.scp")
    dump = tmp_path / "dump_clean"
    assert format_data.main(["--src", str(clean), "--dst", str(dump), "--fs", "8000", "--audio_format",
                             "flac.ark"]) == 0
    assert table(dump / "wav.scp") == table(clean / "wav.scp")


def test_transcribe_reads_archive_entries_as_it_reads_files(dumps: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from echo_plugin.bin import transcribe
    from test.inference.tiny_pack import pack_tiny

    model = pack_tiny(tmp_path)
    lines = {}
    for kind, data in dumps.items():
        capsys.readouterr()
        assert transcribe.main(["--model", str(model), "--wav_scp", str(data / "wav.scp"),
                                "--cache_dir", str(tmp_path / "unpacked")]) == 0
        lines[kind] = sorted(capsys.readouterr().out.splitlines())
    assert [line.split()[0] for line in lines["files"]] == sorted(UTTS)
    assert lines["archives"] == lines["files"]
    bad = corrupted_copy(dumps, tmp_path, UTTS[2])
    assert transcribe.main(["--model", str(model), "--wav_scp", str(bad / "wav.scp"),
                            "--cache_dir", str(tmp_path / "unpacked")]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    entry = table(bad / "wav.scp")[UTTS[2]]
    assert err == [f"transcribe: error: utterance '{UTTS[2]}': unreadable archive entry {entry}: "
                   + err[0].partition(f"{entry}: ")[2]], err
    assert err[0].partition(f"{entry}: ")[2]  # kaldiio's reason, on the same line


@pytest.mark.parametrize("cut", [False, True], ids=["corrupted", "cut_off"])
def test_a_bad_archive_entry_is_one_line_naming_the_utterance(dumps: dict[str, Path], tmp_path: Path, cut: bool,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    utt = UTTS[-1]  # the last entry of its archive: cutting the archive there spares the others
    bad = corrupted_copy(dumps, tmp_path, utt, cut)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(FRONTEND))
    capsys.readouterr()
    assert speaker_stats.main(["--data_dir", str(bad), "--config", str(config), "--out_dir", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err.splitlines()
    entry = table(bad / "wav.scp")[utt]
    problem = "truncated archive entry" if cut else "unreadable archive entry"
    assert len(err) == 1 and err[0].startswith(f"speaker_stats: {entry}: utterance '{utt}': {problem} {entry}: "), err
    assert not (tmp_path / "s").exists()
