"""EchoFrontend: per-feature encoders on one grid, sigmoid blend, gated fusion, batch independence."""
import pytest
import torch

from echo_plugin.asr.frontend.echo_frontend import EchoFrontend
from echo_plugin.asr.frontend.encoders import EncoderInputs, WaveformEncoder
from echo_plugin.asr.frontend.fusion import GatedFusion, SigmoidBlend
from echo_plugin.catalog import FUSION
from echo_plugin.features.grid import frame_mask
from test.features.helpers import recording, speechlike

ALL = ["spectrogram", "waveform", "pitch", "harmonic", "aperiodic", "phase"]
GRID_CONF = dict(fs=8000, n_fft=256, win_length=200, hop_length=80, n_mels=40)


def frontend(features, **kwargs):
    torch.manual_seed(0)
    return EchoFrontend(**GRID_CONF, features=features, output_size=kwargs.pop("output_size", 24), **kwargs).eval()


def batch(waves):
    lengths = torch.tensor([len(w) for w in waves])
    out = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        out[i, : len(w)] = torch.as_tensor(w)
    return out, lengths


@pytest.mark.parametrize("features", [[f] for f in ALL] + [ALL])
def test_shapes_on_the_grid(features):
    fe = frontend(features)
    assert fe.output_size() == 24
    for n in (81, 1999, 4321):
        feats, lengths = fe(torch.from_numpy(speechlike(0.6)[:n])[None], torch.tensor([n]))
        assert feats.shape == (1, n // 80 + 1, 24) and lengths.tolist() == [n // 80 + 1]


@pytest.mark.parametrize("hop, n_fft", [(80, 256), (128, 512), (160, 512)])
def test_waveform_encoder_frames_match_the_grid(hop, n_fft):
    encoder = WaveformEncoder(d_model=8, hop_length=hop)
    for n in (1, hop - 1, hop, 3 * hop + 7, 5000):
        wave = torch.randn(1, n)
        frames = n // hop + 1
        frame_lengths = torch.tensor([frames])
        inputs = EncoderInputs(wave, torch.tensor([n]), {}, frame_lengths, frame_mask(frame_lengths, frames))
        assert encoder(inputs).shape == (1, frames, 8)


def test_padded_batch_equals_single_utterances():
    fe = frontend(ALL)
    waves = [recording("2_nicolas_4"), recording("5_yweweler_1")[:1700], speechlike(0.15)]
    wave, lengths = batch(waves)
    with torch.no_grad():
        out = fe.extract(wave, lengths, with_f0=True)
        for i, w in enumerate(waves):
            lone = fe.extract(torch.from_numpy(w)[None], torch.tensor([len(w)]), with_f0=True)
            t = len(w) // 80 + 1
            torch.testing.assert_close(out.feats[i, :t], lone.feats[0], rtol=1e-4, atol=2e-4)
            torch.testing.assert_close(out.f0[i, :t], lone.f0[0])
            assert out.feats[i, t:].abs().sum() == 0 and out.f0[i, t:].abs().sum() == 0


def test_blend_formula_and_gradient():
    blend = SigmoidBlend(init=0.3)
    wave, spec = torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    s = torch.sigmoid(torch.tensor(0.3))
    torch.testing.assert_close(blend(wave, spec), s * wave + (1 - s) * spec)

    fe = frontend(["spectrogram", "waveform"]).train()
    fusion = fe.fusion
    assert isinstance(fusion, GatedFusion) and fusion.streams == ("audio",)
    seen = {}
    fusion.register_forward_pre_hook(lambda module, args: seen.update(args[0]))
    captured = {}
    fusion.blend.register_forward_hook(lambda module, args, output: captured.update(out=output))
    wave_in, lengths = batch([speechlike(0.3), speechlike(0.2, seed=2)])
    feats, _ = fe(wave_in, lengths)
    mix = torch.sigmoid(fusion.blend.weight)
    torch.testing.assert_close(captured["out"], mix * seen["waveform"] + (1 - mix) * seen["spectrogram"])
    feats.pow(2).mean().backward()
    grad = fusion.blend.weight.grad
    assert grad is not None and grad.abs() > 0


def test_gated_fusion_streams_and_gates():
    fe = frontend(["spectrogram", "waveform", "pitch", "phase"])
    assert fe.fusion.streams == ("audio", "pitch", "phase")
    wave, lengths = batch([speechlike(0.3)])
    fe(wave, lengths)
    gates = fe.fusion.last_gates
    assert gates.shape == (1, 31, 3) and ((gates > 0) & (gates < 1)).all()
    no_blend = frontend(["spectrogram", "waveform"], fusion={"type": "gated", "conf": {"blend": False}})
    assert no_blend.fusion.blend is None and no_blend.fusion.streams == ("spectrogram", "waveform")


def test_fusion_registry():
    assert {"gated", "concat"} <= set(FUSION.names())
    fe = frontend(["spectrogram", "pitch"], fusion={"type": "concat"})
    wave, lengths = batch([speechlike(0.3)])
    assert fe(wave, lengths)[0].shape == (1, 31, 24)
    with pytest.raises(KeyError, match="unknown fusion"):
        frontend(["spectrogram"], fusion="attention")


def test_f0_only_when_asked_or_needed():
    wave, lengths = batch([speechlike(0.3)])
    assert frontend(["spectrogram"]).extract(wave, lengths).f0 is None
    out = frontend(["spectrogram"]).extract(wave, lengths, with_f0=True)
    assert out.f0.shape == (1, 31) and (out.f0 > 0).any()
    assert frontend(["pitch"]).extract(wave, lengths).f0 is not None


def test_configuration_errors():
    for features in ([], ["spectrogram", "spectrogram"], ["mfcc"]):
        with pytest.raises(ValueError, match="features"):
            frontend(features)
    with pytest.raises(ValueError, match="encoder options"):
        frontend(["spectrogram"], encoder={"depth": 3})
    with pytest.raises(ValueError, match="single-channel"):
        frontend(["spectrogram"])(torch.zeros(1, 800, 2), torch.tensor([800]))
    assert EchoFrontend(fs="8k", n_fft=256, hop_length=80, features=["pitch"]).conf.fs == 8000


def test_encoder_options_reach_the_encoders():
    fe = frontend(["spectrogram", "pitch"], encoder={"layers": 3, "kernel_size": 5, "dropout": 0.1})
    convs = fe.encoders["spectrogram"].stack.convs
    assert len(convs) == 3 and convs[0].kernel_size == (5,)
    assert fe.encoders["pitch"].stack.convs[0].kernel_size == (5,)
