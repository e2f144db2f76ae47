"""Per-speaker statistics for speaker_mvn: against a direct computation, silence left out, files, errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from echo_plugin.recipe import speaker_stats
from echo_plugin.recipe.speaker_stats import FrameStats, speech_frames

FS = 8000
FRONTEND = {"frontend": "default", "frontend_conf": {"n_fft": 256, "win_length": 200, "hop_length": 80, "n_mels": 10}}


def tone(freq: float, seconds: float, amp: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * FS)) / FS
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (amp * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def make_dir(root: Path, utts: dict[str, tuple[str, np.ndarray]]) -> Path:
    """utt id -> (speaker, samples): wav files, wav.scp, utt2spk."""
    (root / "wavs").mkdir(parents=True)
    scp, spk = [], []
    for utt, (speaker, samples) in sorted(utts.items()):
        path = root / "wavs" / f"{utt}.wav"
        sf.write(path, samples, FS, subtype="PCM_16")
        scp.append(f"{utt} {path}")
        spk.append(f"{utt} {speaker}")
    (root / "wav.scp").write_text("\n".join(scp) + "\n")
    (root / "utt2spk").write_text("\n".join(spk) + "\n")
    return root


def reference_stats(wavs: list[Path], vad_range: float) -> np.ndarray:
    """Direct computation: ESPnet's DefaultFrontend per file, frames near the loudest kept, mean and std."""
    from espnet2.asr.frontend.default import DefaultFrontend

    frontend = DefaultFrontend(fs=FS, **FRONTEND["frontend_conf"]).eval()
    kept = []
    for wav in wavs:
        x = torch.tensor(sf.read(wav, dtype="float32")[0])[None]
        feats = frontend(x, torch.tensor([x.shape[1]]))[0][0].double()
        energy = torch.logsumexp(feats, -1)
        kept.append(feats[energy >= energy.max() - vad_range].numpy())
    frames = np.concatenate(kept)
    return np.stack([frames.mean(0), frames.std(0)])


@pytest.fixture()
def data(tmp_path: Path) -> tuple[Path, dict[str, tuple[str, np.ndarray]]]:
    silence = np.zeros(2000, dtype=np.float32)
    utts = {
        "a1": ("alice", tone(300, 0.5, 0.3, 1)),
        "a2": ("alice", np.concatenate([silence, tone(500, 0.4, 0.2, 2), silence])),  # digital silence around
        "b1": ("bob", tone(900, 0.6, 0.5, 3)),
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(FRONTEND))
    return make_dir(tmp_path / "set", utts), utts


def test_statistics_match_a_direct_computation_and_skip_silence(data, tmp_path: Path) -> None:
    data_dir, utts = data
    wav = {utt: data_dir / "wavs" / f"{utt}.wav" for utt in utts}
    out = tmp_path / "out"
    assert speaker_stats.main(["--data_dir", str(data_dir), "--config", str(tmp_path / "config.yaml"),
                               "--fs", str(FS), "--out_dir", str(out)]) == 0
    alice = np.load(out / "stats" / "alice.npy")
    bob = np.load(out / "stats" / "bob.npy")
    assert alice.shape == (2, 10) and alice.dtype == np.float32
    np.testing.assert_allclose(alice, reference_stats([wav["a1"], wav["a2"]], 8.0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bob, reference_stats([wav["b1"]], 8.0), rtol=1e-4, atol=1e-4)
    # the digital silence of a2 is left out: counting every frame lowers alice's mean a lot
    everything = reference_stats([wav["a1"], wav["a2"]], 1e9)
    assert (everything[0] < alice[0] - 1.0).all()
    scp = dict(line.split() for line in (out / "spk_stats.scp").read_text().splitlines())
    assert scp == {"a1": str(out / "stats" / "alice.npy"), "a2": str(out / "stats" / "alice.npy"),
                   "b1": str(out / "stats" / "bob.npy")}
    pooled = np.load(out / "pooled_stats.npz")
    assert int(pooled["count"]) > 0
    np.testing.assert_allclose(pooled["sum"] / pooled["count"],
                               reference_stats(list(wav.values()), 8.0)[0], rtol=1e-4, atol=1e-4)


def test_a_frontend_with_parameters_is_refused(data, tmp_path: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import espnet2.tasks.asr as asr_task
    from espnet2.asr.frontend.abs_frontend import AbsFrontend

    class LearnedFrontend(AbsFrontend):
        def __init__(self, fs: int = 8000) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(1, 4)

        def output_size(self) -> int:
            return 4

        def forward(self, x, lengths):
            return self.proj(x[..., None]), lengths

    monkeypatch.setitem(asr_task.frontend_choices.classes, "learned", LearnedFrontend)
    data_dir, _ = data
    config = tmp_path / "learned.yaml"
    config.write_text(yaml.safe_dump({"frontend": "learned"}))
    out = tmp_path / "out"
    assert speaker_stats.main(["--data_dir", str(data_dir), "--config", str(config), "--fs", str(FS),
                               "--out_dir", str(out)]) == 1
    assert "without trainable parameters" in capsys.readouterr().err
    assert not out.exists()


def test_the_echo_frontend_gives_statistics_of_its_raw_frame_features(data, tmp_path: Path) -> None:
    """frontend: echo has parameters, but its raw spectrogram (+ phase) are what speaker_mvn normalizes."""
    from echo_plugin.asr.frontend.echo_frontend import EchoFrontend

    data_dir, utts = data
    conf = {"fs": FS, "n_fft": 256, "hop_length": 80, "n_mels": 10, "features": ["spectrogram", "waveform", "phase"],
            "output_size": 8, "phase_bands": 4}
    config = tmp_path / "echo.yaml"
    config.write_text(yaml.safe_dump({"frontend": "echo", "frontend_conf": conf}))
    out = tmp_path / "out"
    assert speaker_stats.main(["--data_dir", str(data_dir), "--config", str(config), "--out_dir", str(out)]) == 0
    frontend = EchoFrontend(**conf)
    x = torch.tensor(sf.read(data_dir / "wavs" / "b1.wav", dtype="float32")[0])[None]
    raw = frontend.extractor(x, torch.tensor([x.shape[1]]), names=("spectrogram", "phase"))
    frames = torch.cat([raw.feats["spectrogram"][0], raw.feats["phase"][0]], -1).double()
    frames = frames[speech_frames(frames)].numpy()
    np.testing.assert_allclose(np.load(out / "stats" / "bob.npy"), np.stack([frames.mean(0), frames.std(0)]),
                               rtol=1e-4, atol=1e-4)


def test_missing_speaker_and_wrong_rate_name_the_utterance(data, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    data_dir, _ = data
    args = ["--data_dir", str(data_dir), "--config", str(tmp_path / "config.yaml"), "--out_dir", str(tmp_path / "o")]
    assert speaker_stats.main([*args, "--fs", "16000"]) == 1
    assert "'a1'" in capsys.readouterr().err
    (data_dir / "utt2spk").write_text("a1 alice\na2 alice\n")
    assert speaker_stats.main([*args, "--fs", str(FS)]) == 1
    err = capsys.readouterr().err
    assert "utterance 'b1': no speaker" in err


def test_speech_frames_keeps_frames_near_the_loudest() -> None:
    feats = torch.log(torch.tensor([[1.0, 1.0], [1e-6, 1e-6], [0.5, 0.5]]))
    assert speech_frames(feats, vad_range=2.0).tolist() == [True, False, True]


def test_frame_stats_merge_equals_one_pass() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    one, left, right = FrameStats(), FrameStats(), FrameStats()
    one.add(np.concatenate([a, b]))
    left.add(a)
    right.add(b)
    left.merge(right)
    np.testing.assert_allclose(left.mean_std(), one.mean_std(), rtol=1e-6)


def test_one_utterance_per_speaker_is_warned_about(data, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data_dir, _ = data
    (data_dir / "utt2spk").write_text("a1 a1\na2 a2\nb1 b1\n")
    assert speaker_stats.main(["--data_dir", str(data_dir), "--config", str(tmp_path / "config.yaml"), "--fs", str(FS),
                               "--out_dir", str(tmp_path / "o")]) == 0
    assert "every utterance" in capsys.readouterr().err


def test_a_prior_counts_as_that_many_frames_of_the_pooled_statistics() -> None:
    """Online CMVN's prior: the file's frames and tau virtual frames of (mu0, std0) pooled."""
    rng = np.random.default_rng(3)
    own = rng.normal(2.0, 0.5, size=(40, 4))
    prior = rng.normal(-1.0, 2.0, size=(100_000, 4))
    stats = FrameStats()
    stats.add(own)
    mixed = stats.with_prior(prior.mean(0), prior.std(0), 60.0).mean_std()
    # 60 frames of the prior's distribution, drawn exactly: its mean and variance, weighted 60 : 40
    mean = (40 * own.mean(0) + 60 * prior.mean(0)) / 100
    second = (40 * (own ** 2).mean(0) + 60 * (prior.var(0) + prior.mean(0) ** 2)) / 100
    np.testing.assert_allclose(mixed[0], mean, rtol=1e-5)
    np.testing.assert_allclose(mixed[1], np.sqrt(second - mean ** 2), rtol=1e-5)
    assert stats.with_prior(prior.mean(0), prior.std(0), 0.0) is stats
    np.testing.assert_allclose(FrameStats().with_prior(prior.mean(0), prior.std(0), 5.0).mean_std(),
                               np.stack([prior.mean(0), prior.std(0)]), rtol=1e-5)
