"""FSDD's shipped SHA-256 manifest: it is the shared real copy's, a download is checked against it before it is
moved into place, and stage 1 checks the corpus root (a modified, truncated or missing recording is one line
naming the file; extra files are ignored; --skip_checksum for a copy changed on purpose)."""
from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from echo_plugin.data import fsdd
from echo_plugin.data.fsdd_manifest import ChecksumError, manifest_lines, read_manifest, verify_recordings
from test.data.test_fsdd import SHARED_FSDD, copy_recipe_script, run_data_sh

# the recordings of the fake upstream archive: one speaker's first two takes
FEW = [f"recordings/{digit}_jackson_{take}.wav" for digit in range(10) for take in range(2)]


def test_the_shipped_manifest_is_the_shared_copys_and_it_passes() -> None:
    shipped = read_manifest()
    assert len(shipped) == 2500 and all(path.startswith("recordings/") for path in shipped)
    assert {path.split("_")[1] for path in shipped} == {"george", "jackson", "lucas", "nicolas", "yweweler"}
    assert [f"{digest}  {path}" for path, digest in shipped.items()] == list(manifest_lines(SHARED_FSDD))
    assert verify_recordings(SHARED_FSDD) == 2500


def test_the_check_names_a_modified_truncated_or_missing_recording(tmp_path: Path) -> None:
    root = tmp_path / "fsdd"
    (root / "recordings").mkdir(parents=True)
    for path in FEW:
        shutil.copy(SHARED_FSDD / path, root / path)
    manifest = {path: digest for path, digest in read_manifest().items() if path in FEW}
    (root / "recordings" / "0_theo_0.wav").write_bytes(b"a speaker the manifest does not list")
    (root / "README.md").write_text("extra files are ignored\n")
    assert verify_recordings(root, manifest) == len(FEW)
    modified, cut, gone = (root / FEW[i] for i in (3, 7, 12))
    data = bytearray(modified.read_bytes())
    data[len(data) // 2] ^= 1  # one bit of one sample
    modified.write_bytes(bytes(data))
    cut.write_bytes(cut.read_bytes()[:-300])
    gone.unlink()
    with pytest.raises(ChecksumError) as error:
        verify_recordings(root, manifest)
    message = str(error.value)
    assert message.startswith(f"FSDD recording {modified}: SHA-256 ") and "(modified or truncated)" in message
    assert message.endswith("; 2 more recording(s) differ or are missing (a copy changed on purpose: --skip_checksum)")
    assert "\n" not in message
    modified.write_bytes((SHARED_FSDD / FEW[3]).read_bytes())
    with pytest.raises(ChecksumError, match=rf"^FSDD recording {cut}: SHA-256 [0-9a-f]{{64}} differs from the "
                                            r"manifest's [0-9a-f]{64} \(truncated: its header declares \d+ samples, "
                                            r"the file holds \d+\); 1 more"):
        verify_recordings(root, manifest)
    cut.write_bytes((SHARED_FSDD / FEW[7]).read_bytes())
    with pytest.raises(ChecksumError, match=rf"^FSDD recording {gone} is missing \(listed in the package's "
                                            r"fsdd_sha256.txt\) \(a copy changed on purpose: --skip_checksum\)$"):
        verify_recordings(root, manifest)
    with pytest.raises(FileNotFoundError, match="no FSDD 'recordings' folder in"):
        verify_recordings(tmp_path / "nowhere", manifest)


def test_stage_1_checks_the_corpus_root_unless_told_not_to(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "fsdd"
    shutil.copytree(SHARED_FSDD / "recordings", root / "recordings")
    (root / "recordings" / "3_lucas_7.wav").write_bytes((root / "recordings" / "3_lucas_7.wav").read_bytes()[:-2])
    options = ["--fsdd_root", str(root), "--max_takes", "1", "--n_connected_train", "3", "--n_connected_dev", "1",
               "--n_connected_test", "1"]
    with pytest.raises(SystemExit) as exit_:
        fsdd.main([*options, "--out_dir", str(tmp_path / "data")])
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: FSDD recording {root / 'recordings' / '3_lucas_7.wav'}: SHA-256 ") and \
        err.count("\n") == 1, err
    assert not (tmp_path / "data").exists()
    assert fsdd.main([*options, "--out_dir", str(tmp_path / "data"), "--skip_checksum"]) == 0  # the user's own copy
    assert (tmp_path / "data" / "train" / "wav.scp").is_file()
    # the recipe's local/data.sh: the same refusal, and --skip_checksum true passed through
    recipe = tmp_path / "asr1"
    script = copy_recipe_script(recipe)
    refused = run_data_sh(script, options, recipe)
    assert refused.returncode == 1 and "3_lucas_7.wav: SHA-256 " in refused.stderr, refused.stderr
    assert not (recipe / "data" / "train").exists()
    taken = run_data_sh(script, [*options, "--skip_checksum", "true"], recipe)
    assert taken.returncode == 0, taken.stderr
    assert (recipe / "data" / "train" / "wav.scp").is_file()


def test_a_download_with_a_corrupted_recording_is_not_kept(tmp_path: Path) -> None:
    manifest = {path: digest for path, digest in read_manifest().items() if path in FEW}

    def upstream(commit: str, corrupt: str | None) -> str:
        """A fake upstream archive of the FEW real recordings (``corrupt`` with one byte changed)."""
        top = tmp_path / "server" / commit / f"free-spoken-digit-dataset-{commit}"
        (top / "recordings").mkdir(parents=True)
        for path in FEW:
            data = bytearray((SHARED_FSDD / path).read_bytes())
            if path == corrupt:
                data[-1] ^= 0xFF
            (top / path).write_bytes(bytes(data))
        with tarfile.open(tmp_path / "server" / f"{commit}.tar.gz", "w:gz") as tar:
            tar.add(top, arcname=top.name)
        return f"file://{tmp_path / 'server'}/{{commit}}.tar.gz"

    url = upstream("bad", corrupt=FEW[5])
    with pytest.raises(ValueError, match=rf"^bad FSDD archive from file://.*bad.tar.gz: FSDD recording "
                                         rf".*free-spoken-digit-dataset-bad/{FEW[5]}: SHA-256 "):
        fsdd.download_fsdd(tmp_path / "dl", commit="bad", url_template=url, n_speakers=1, n_takes=2,
                           manifest=manifest)
    assert list((tmp_path / "dl").iterdir()) == []  # neither the archive nor a half-checked copy is kept
    url = upstream("good", corrupt=None)
    root = fsdd.download_fsdd(tmp_path / "dl", commit="good", url_template=url, n_speakers=1, n_takes=2,
                              manifest=manifest)
    assert verify_recordings(root, manifest) == len(FEW)
