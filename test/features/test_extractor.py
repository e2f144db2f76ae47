"""All features of a batch on one grid; padded batches; loader-delivered (cached) arrays."""
import numpy as np
import pytest
import torch

from echo_plugin.features import FeatureConfig, FeatureExtractor
from echo_plugin.features.extractor import STORED_FEATURES

from .helpers import CONF, LENGTHS, recording, speechlike


def batch(waves):
    lengths = torch.tensor([len(w) for w in waves])
    out = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        out[i, : len(w)] = torch.as_tensor(w)
    return out, lengths


def test_every_feature_has_the_spectrogram_frame_count():
    extractor = FeatureExtractor(CONF, STORED_FEATURES)
    x = speechlike(0.6)
    for n in LENGTHS:
        out = extractor.utterance(x[:n])
        frames = out["spectrogram"].shape[0]
        assert frames == n // CONF.hop_length + 1
        for name, dim in CONF.dims().items():
            expected = (frames,) if name == "pitch" else (frames, dim)
            assert out[name].shape == expected and out[name].dtype == np.float32, name


def test_padded_batch_equals_single_utterances():
    extractor = FeatureExtractor(CONF, STORED_FEATURES)
    waves = [recording("4_lucas_2"), recording("9_george_5")[:2345], speechlike(0.2)]
    wave, lengths = batch(waves)
    out = extractor(wave, lengths)
    assert out.lengths.tolist() == [len(w) // 80 + 1 for w in waves]
    for i, w in enumerate(waves):
        lone = extractor.utterance(w)
        t = len(w) // 80 + 1
        for name in STORED_FEATURES:
            got = out.feats[name][i].numpy()
            np.testing.assert_allclose(got[:t], lone[name], rtol=1e-5, atol=1e-4, err_msg=name)
            assert not got[t:].any(), f"{name}: padding frames must be 0"
    torch.testing.assert_close(out.f0, out.feats["pitch"])


def test_f0_on_request_only():
    extractor = FeatureExtractor(CONF, ["spectrogram"])
    wave, lengths = batch([speechlike(0.3)])
    assert extractor(wave, lengths).f0 is None
    out = extractor(wave, lengths, with_f0=True)
    assert list(out.feats) == ["spectrogram"] and out.f0.shape == (1, 2400 // 80 + 1) and (out.f0 > 0).any()


def test_cached_arrays_replace_the_computation(monkeypatch):
    extractor = FeatureExtractor(CONF, ["pitch", "harmonic", "spectrogram"])
    waves = [speechlike(0.3), speechlike(0.2, seed=1)]
    wave, lengths = batch(waves)
    computed = extractor(wave, lengths)
    frames = computed.lengths
    cached = {name: (computed.feats[name], frames) for name in ("pitch", "harmonic")}

    def no_world(*args, **kwargs):
        raise AssertionError("WORLD analysis must not run when the loader delivered the features")

    monkeypatch.setattr(extractor, "_world", no_world)
    out = extractor(wave, lengths, cached=cached)
    for name in ("pitch", "harmonic", "spectrogram"):
        torch.testing.assert_close(out.feats[name], computed.feats[name])
    torch.testing.assert_close(out.f0, computed.f0)


def test_cached_arrays_are_checked_against_the_grid():
    extractor = FeatureExtractor(CONF, ["pitch"])
    wave, lengths = batch([speechlike(0.3)])
    frames = lengths // 80 + 1
    with pytest.raises(ValueError, match="other settings"):
        extractor(wave, lengths, cached={"pitch": (torch.zeros(1, 61), frames * 2)})
    with pytest.raises(ValueError, match="shape"):
        extractor(wave, lengths, cached={"pitch": (torch.zeros(1, 31, 3), frames)})


def test_unknown_feature_and_d4c_at_8k_are_refused():
    with pytest.raises(ValueError, match="unknown features"):
        FeatureExtractor(CONF, ["mfcc"])
    with pytest.raises(ValueError, match="D4C"):
        FeatureExtractor(FeatureConfig(fs=8000, n_fft=256, hop_length=80, aperiodic_method="d4c"), ["aperiodic"])


def test_config_round_trips_through_a_dict():
    assert FeatureConfig.from_dict(CONF.to_dict()) == CONF
