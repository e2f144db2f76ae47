"""The feature cache: ark/scp round trip, job split order, settings from the training YAML."""
import numpy as np
import pytest
import yaml

from echo_plugin.features import FeatureConfig, FeatureExtractor
from echo_plugin.features.cache import feature_config, load_feature, main, read_feature_conf, write_cache

from .helpers import CONF, FSDD

NAMES = ["3_george_4", "0_jackson_11", "7_lucas_1", "1_nicolas_30", "8_yweweler_9"]  # not sorted: order is kept


@pytest.fixture()
def wav_scp(tmp_path):
    path = tmp_path / "wav.scp"
    path.write_text("".join(f"{name} {FSDD / (name + '.wav')}\n" for name in NAMES))
    return path


def test_round_trip_gives_identical_arrays(wav_scp, tmp_path):
    features = ["pitch", "harmonic", "aperiodic", "phase", "spectrogram"]
    scps = write_cache(wav_scp, tmp_path / "feats", features, CONF, nj=1)
    assert set(scps) == set(features)
    extractor = FeatureExtractor(CONF, features)
    from echo_plugin.features.cache import read_audio

    for name in features:
        stored = load_feature(tmp_path / "feats", name)
        assert list(stored) == NAMES
        for utt, array in stored.items():
            expected = extractor.utterance(read_audio(str(FSDD / f"{utt}.wav"), 8000))[name]
            assert array.dtype == np.float32 and np.array_equal(array, expected), (name, utt)
    conf, names = read_feature_conf(tmp_path / "feats")
    assert conf == CONF and names == features


def test_jobs_keep_the_wav_scp_order_and_cli_reads_the_training_yaml(wav_scp, tmp_path):
    config = tmp_path / "train.yaml"
    frontend_conf = {"fs": 8000, "n_fft": 256, "win_length": 200, "hop_length": 80, "n_mels": 40,
                     "features": ["spectrogram", "pitch"], "f0": {"floor": 60.0, "ceil": 300.0}}  # fmt: skip
    config.write_text(yaml.safe_dump({"frontend": "echo", "frontend_conf": frontend_conf}))
    out = tmp_path / "feats"
    assert main(["--wav_scp", str(wav_scp), "--out_dir", str(out), "--features", "pitch",
                 "--config", str(config), "--nj", "2"]) == 0  # fmt: skip
    conf, _ = read_feature_conf(out)
    assert conf == feature_config(frontend_conf) and conf.f0.floor == 60.0 and conf.n_mels == 40
    stored = load_feature(out, "pitch")
    assert list(stored) == NAMES
    assert len({line.split()[1].split(":")[0] for line in (out / "pitch.scp").read_text().splitlines()}) == 2
    lone = write_cache(wav_scp, tmp_path / "one_job", ["pitch"], conf, nj=1)["pitch"]
    for utt, array in load_feature(lone.parent, "pitch").items():
        assert np.array_equal(array, stored[utt])


def test_wrong_rate_or_frontend_is_an_error(wav_scp, tmp_path):
    with pytest.raises(ValueError, match="sample rate 8000"):
        write_cache(wav_scp, tmp_path / "x", ["pitch"], FeatureConfig(fs=16000), nj=1)
    assert not (tmp_path / "x").exists()  # nothing half-written
    config = tmp_path / "default.yaml"
    config.write_text("frontend: default\n")
    assert main(["--wav_scp", str(wav_scp), "--out_dir", str(tmp_path / "y"), "--config", str(config)]) == 1


def test_a_bad_recording_is_one_line_naming_utterance_and_file(wav_scp, tmp_path, capsys):
    broken = tmp_path / "broken.wav"
    broken.write_bytes((FSDD / "7_lucas_1.wav").read_bytes()[:30])  # a header cut inside itself
    wav_scp.write_text(wav_scp.read_text() + f"9_lucas_0 {broken}\n")
    for nj in ("1", "2"):  # in this process and from a worker process
        out = tmp_path / f"feats{nj}"
        assert main(["--wav_scp", str(wav_scp), "--out_dir", str(out), "--features", "pitch", "--fs", "8000",
                     "--nj", nj]) == 1  # fmt: skip
        err = capsys.readouterr().err
        assert err.startswith("error: utterance 9_lucas_0: ") and str(broken) in err and err.count("\n") == 1, err
        assert not out.exists()  # nothing half-written
