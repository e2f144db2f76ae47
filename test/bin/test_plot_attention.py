"""plot_attention: maps that reproduce the attention output, valid distributions, PNGs of fixed size."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

import echo_plugin
from echo_plugin.asr.decoder.echo_decoder import EchoDecoder
from echo_plugin.inference.attention_maps import decoder_maps, explicit_weights
from echo_plugin.inference.attention_plots import DPI, DUAL_SIZE, MAP_SIZE, SPEC_SIZE
from test.recipe.noise_fixtures import voiced

REPO = Path(__file__).resolve().parents[2]
TOKENS = ["<blank>", "<unk>", "O", "N", "E", "T", "W", "<sos/eos>"]


def pixels(size: tuple[float, float]) -> tuple[int, int]:
    """(height, width) of a figure of ``size`` inches at DPI."""
    return int(size[1] * DPI), int(size[0] * DPI)


@pytest.mark.parametrize("masking", ["hard", "soft"])
def test_explicit_weights_reproduce_the_cross_attention_output(masking: str) -> None:
    torch.manual_seed(0)
    decoder = EchoDecoder(len(TOKENS), 16, attention_heads=2, linear_units=32, num_blocks=1,
                          layers=[{"num": 1, "cross_masking": masking}]).eval()
    attn = decoder.blocks[0].cross_attn
    query, memory = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    mask = torch.tensor([[True] * 9, [True] * 6 + [False] * 3])
    out, (k, v) = attn(query, memory, key_padding_mask=mask)
    weights = explicit_weights(attn, query, k, mask)
    assert weights.shape == (2, 2, 5, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 5))
    if masking == "hard":  # soft masking scores padding keys 0 instead of hiding them
        assert torch.all(weights[1, :, :, 6:] == 0)
    rebuilt = attn.out((weights @ v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(rebuilt, out, atol=1e-5, rtol=1e-5)


def test_hooks_leave_decoding_unchanged_and_are_removed() -> None:
    torch.manual_seed(1)
    decoder = EchoDecoder(len(TOKENS), 16, attention_heads=2, linear_units=32, num_blocks=2).eval()
    hs, ys = torch.randn(1, 7, 16), torch.tensor([[7, 2, 3, 4]])
    before = decoder(hs, torch.tensor([7]), ys, torch.tensor([4]))[0]
    maps = decoder_maps(decoder, hs, torch.tensor([7]), ys, torch.tensor([4]))
    assert [m.primary.shape for m in maps] == [(2, 4, 7)] * 2
    assert all(not block.cross_attn._forward_hooks for block in decoder.blocks)
    torch.testing.assert_close(decoder(hs, torch.tensor([7]), ys, torch.tensor([4]))[0], before)


@dataclass
class FakeExtras:
    primary_attn: torch.Tensor
    secondary_attn: torch.Tensor
    gate: torch.Tensor


class FakeDualDecoder(torch.nn.Module):
    """The agreed dual interface: forward_extras -> (logits, [DualLayerExtras per layer])."""

    def forward_extras(self, hs_pad, hlens, ys_in_pad, ys_in_lens):  # noqa: ANN001, ANN201
        b, length, t = ys_in_pad.shape[0], ys_in_pad.shape[1], hs_pad.shape[1]
        extras = [FakeExtras(torch.rand(b, 3, length, t).softmax(-1), torch.rand(b, 3, length, t).softmax(-1),
                             torch.rand(b, length, 1)) for _ in range(2)]
        return torch.zeros(b, length, 5), extras


def test_dual_interface_maps_and_plot(tmp_path: Path) -> None:
    from echo_plugin.bin.plot_attention import write_layer

    decoder = FakeDualDecoder()
    maps = decoder_maps(decoder, torch.randn(1, 6, 4), torch.tensor([6]), torch.tensor([[7, 2, 3]]), torch.tensor([3]))
    assert len(maps) == 2 and maps[0].gate.shape == (3,) and maps[0].secondary.shape == (3, 3, 6)
    written = write_layer(maps[1], 1, ["O", "N", "<eos>"], tmp_path)
    assert [p.name for p in written] == ["primary_attn_layer1.npy", "secondary_attn_layer1.npy", "gate_layer1.npy",
                                         "dual_attn_layer1.png"]
    assert matplotlib.image.imread(tmp_path / "dual_attn_layer1.png").shape[:2] == pixels(DUAL_SIZE)
    np.testing.assert_allclose(np.load(tmp_path / "gate_layer1.npy"), maps[1].gate.numpy())


def save_tiny_model(root: Path, *options: str) -> tuple[Path, Path]:
    """A tiny untrained Echo model (8 kHz fbank frontend) saved as ESPnet's config.yaml + weights."""
    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    (root / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    args = ASRTask.get_parser().parse_args([
        "--config", str(REPO / "test" / "fixtures" / "train_asr_echo_tiny.yaml"),
        "--token_list", str(root / "tokens.txt"), "--token_type", "char", "--frontend_conf", "fs=8000",
        "--normalize", "utterance_mvn", "--output_dir", str(root), *options])
    torch.manual_seed(0)
    model = ASRTask.build_model(args)
    torch.save(model.state_dict(), root / "model.pth")
    with open(root / "config.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, f)
    return root / "model.pth", root / "config.yaml"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


def write_wav(tmp_path: Path) -> Path:
    wav = tmp_path / "a.wav"
    sf.write(wav, voiced(np.random.default_rng(0), seconds=1.0), 8000, subtype="PCM_16")
    return wav


def test_command_writes_maps_and_pngs(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    from echo_plugin.bin import plot_attention

    wav = write_wav(tmp_path)
    out = tmp_path / "plots"
    model_file, config = tiny_model
    assert plot_attention.main(["--model_file", str(model_file), "--config", str(config), "--wav", str(wav),
                                "--out_dir", str(out), "--decode_config",
                                str(REPO / "test" / "fixtures" / "decode_fast.yaml")]) == 0
    text, tokens = (out / "hypothesis.txt").read_text().split("\n")[:2]
    n_steps = len(tokens.split()) + 1
    n_frames = None
    for layer in range(2):  # the tiny config has 1 decoder block; a second must not exist
        path = out / f"cross_attn_layer{layer}.npy"
        if layer == 1:
            assert not path.exists()
            continue
        weights = np.load(path)
        n_frames = weights.shape[2]
        assert weights.shape[:2] == (2, n_steps)  # 2 heads
        np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-5)
        assert np.all(weights >= 0)
        png = out / f"cross_attn_layer{layer}.png"
        assert png.stat().st_size > 1000
        assert matplotlib.image.imread(png).shape[:2] == pixels(MAP_SIZE)
    # fbank frames (hop 80, centred) of the 1.4 s wav, then conv2d subsampling by 4.
    fbank_frames = sf.info(wav).frames // 80 + 1
    assert n_frames == ((fbank_frames - 1) // 2 - 1) // 2
    assert matplotlib.image.imread(out / "spectrogram.png").shape[:2] == pixels(SPEC_SIZE)
    assert not (out / "f0.npy").exists()  # this encoder reads no pitch


def test_command_refuses_half_a_model(tmp_path: Path) -> None:
    from echo_plugin.bin import plot_attention

    with pytest.raises(SystemExit):
        plot_attention.parse_args(["--model_file", "x.pth", "--wav", "a.wav", "--out_dir", str(tmp_path)])


def test_command_on_the_dual_decoder(tmp_path: Path) -> None:
    """decoder: dual end to end: both maps per layer are distributions, the gate lies in [0, 1]."""
    from echo_plugin.bin import plot_attention

    model_file, config = save_tiny_model(tmp_path, "--decoder", "dual",
                                         "--decoder_conf", "{num_blocks: 2, attention_heads: 2, linear_units: 64}")
    out = tmp_path / "plots"
    assert plot_attention.main(["--model_file", str(model_file), "--config", str(config), "--wav",
                                str(write_wav(tmp_path)), "--out_dir", str(out), "--decode_config",
                                str(REPO / "test" / "fixtures" / "decode_fast.yaml")]) == 0
    n_steps = len((out / "hypothesis.txt").read_text().split("\n")[1].split()) + 1
    for layer in range(2):
        primary, secondary = (np.load(out / f"{kind}_attn_layer{layer}.npy") for kind in ("primary", "secondary"))
        assert primary.shape[:2] == secondary.shape[:2] == (2, n_steps) and primary.shape == secondary.shape
        np.testing.assert_allclose(primary.sum(-1), 1.0, atol=1e-5)
        np.testing.assert_allclose(secondary.sum(-1), 1.0, atol=1e-5)
        gate = np.load(out / f"gate_layer{layer}.npy")
        assert gate.shape == (n_steps,) and np.all((gate >= 0) & (gate <= 1))
        assert matplotlib.image.imread(out / f"dual_attn_layer{layer}.png").shape[:2] == pixels(DUAL_SIZE)
    assert not (out / "cross_attn_layer0.npy").exists()


def test_pitch_aware_model_gets_its_f0_track(tmp_path: Path) -> None:
    """A pitch-aware encoder: f0.npy holds the frontend's f0, which finds the synthetic voice's pitch."""
    from echo_plugin.bin import plot_attention

    model_file, config = save_tiny_model(
        tmp_path, "--model", "echo", "--frontend", "echo",
        "--frontend_conf",
        "{features: [spectrogram, pitch], output_size: 40, f0: {method: dio, floor: 60.0, ceil: 300.0}}",
        "--encoder_conf", "{layers: [{num: 2, rotary: {type: pitch_aware}}]}")
    wav = write_wav(tmp_path)
    out = tmp_path / "plots"
    assert plot_attention.main(["--model_file", str(model_file), "--config", str(config), "--wav", str(wav),
                                "--out_dir", str(out), "--decode_config",
                                str(REPO / "test" / "fixtures" / "decode_fast.yaml")]) == 0
    f0 = np.load(out / "f0.npy")
    true_f0 = np.random.default_rng(0).uniform(90, 250)  # voiced()'s first draw
    assert f0.ndim == 1 and abs(len(f0) - sf.info(wav).frames / 80) <= 2  # one value per 10 ms frame
    assert np.median(f0[f0 > 0]) == pytest.approx(true_f0, rel=0.05)
    assert matplotlib.image.imread(out / "spectrogram.png").shape[:2] == pixels(SPEC_SIZE)
    assert (out / "cross_attn_layer0.npy").is_file()


def test_packed_model_gives_the_same_maps(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    from espnet2.main_funcs.pack_funcs import pack

    from echo_plugin.bin import plot_attention

    model_file, config = tiny_model
    archive = tmp_path / "tiny.zip"
    pack(files={"asr_model_file": model_file}, yaml_files={"asr_train_config": config}, outpath=archive)
    wav = write_wav(tmp_path)
    decode = str(REPO / "test" / "fixtures" / "decode_fast.yaml")
    common = ["--wav", str(wav), "--decode_config", decode]
    assert plot_attention.main(["--packed_model", str(archive), "--out_dir", str(tmp_path / "a"), *common]) == 0
    assert plot_attention.main(["--model_file", str(model_file), "--config", str(config),
                                "--out_dir", str(tmp_path / "b"), *common]) == 0
    assert (tmp_path / "a" / "hypothesis.txt").read_text() == (tmp_path / "b" / "hypothesis.txt").read_text()
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "cross_attn_layer0.npy"),
                                  np.load(tmp_path / "b" / "cross_attn_layer0.npy"))
