"""EchoASRModel (``model: echo``) with the Echo frontend, built through ESPnet's ASRTask.

Covers every feature subset (forward + backward), f0 reaching encoders that
take it, collect_stats' ``collect_feats``, features cached at data
preparation arriving through ESPnet's own data loader, and the unsupported
preencoder.
"""
from __future__ import annotations

from typing import Optional

import pytest
import torch
import yaml
from torch import Tensor, nn

import echo_plugin
from echo_plugin.asr.espnet_model import EchoASRModel
from echo_plugin.asr.frontend.echo_frontend import EchoFrontend
from echo_plugin.features.extractor import FeatureExtractor
from test.features.helpers import FSDD, recording

ALL = ["spectrogram", "waveform", "pitch", "harmonic", "aperiodic", "phase"]
TOKENS = ["<blank>", "<unk>", "e", "f", "h", "i", "n", "o", "r", "s", "t", "u", "v", "w", "x", "z", "<sos/eos>"]
UTTS = {"2_nicolas_4": "two", "6_jackson_1": "six", "9_george_5": "nine"}
TRANSFORMER = {"output_size": 16, "attention_heads": 2, "linear_units": 16, "num_blocks": 1, "input_layer": "conv2d"}
DECODER = {"attention_heads": 2, "linear_units": 16, "num_blocks": 1}


def frontend_conf(features, **extra):
    conf = {"fs": 8000, "n_fft": 256, "win_length": 200, "hop_length": 80, "n_mels": 20,
            "features": list(features), "output_size": 16, "world_bands": 8, "phase_bands": 8}  # fmt: skip
    conf.update(extra)
    return conf


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    workdir = tmp_path_factory.mktemp("echo_model")
    (workdir / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    return ASRTask, workdir


def build(task, features, encoder="transformer", encoder_conf=None, extra=(), seed=0, **frontend_extra):
    ASRTask, workdir = task
    fe_conf = yaml.safe_dump(frontend_conf(features, **frontend_extra))
    args = ASRTask.get_parser().parse_args(
        ["--token_list", str(workdir / "tokens.txt"), "--token_type", "char",
         "--model", "echo", "--frontend", "echo", "--frontend_conf", fe_conf,
         "--normalize", "none",
         "--encoder", encoder, "--encoder_conf", yaml.safe_dump(encoder_conf or TRANSFORMER),
         "--decoder", "transformer", "--decoder_conf", yaml.safe_dump(DECODER),
         "--model_conf", "ctc_weight=0.3", *extra]
    )  # fmt: skip
    torch.manual_seed(seed)
    return ASRTask.build_model(args), args


def speech_batch():
    waves = [recording(name) for name in UTTS]
    lengths = torch.tensor([len(w) for w in waves])
    speech = torch.zeros(len(waves), int(lengths.max()))
    for i, w in enumerate(waves):
        speech[i, : len(w)] = torch.from_numpy(w)
    ids = [[TOKENS.index(c) for c in text] for text in UTTS.values()]
    text = torch.full((len(ids), max(map(len, ids))), -1)
    for i, row in enumerate(ids):
        text[i, : len(row)] = torch.tensor(row)
    return speech, lengths, text, torch.tensor([len(r) for r in ids])


class F0Recorder(nn.Module):
    """An encoder (AbsEncoder interface) that records the f0 it is given."""

    def __init__(self, input_size: int, output_size: int = 16) -> None:
        super().__init__()
        self.proj = nn.Linear(input_size, output_size)
        self.seen: list[Optional[Tensor]] = []

    def output_size(self) -> int:
        return self.proj.out_features

    def forward(self, xs_pad: Tensor, ilens: Tensor, prev_states=None, f0: Optional[Tensor] = None):
        self.seen.append(None if f0 is None else f0.detach().clone())
        return self.proj(xs_pad), ilens, None


@pytest.mark.parametrize(
    "features",
    [["spectrogram"], ["waveform"], ["pitch"], ["harmonic"], ["aperiodic"], ["phase"],
     ["spectrogram", "waveform"], ["spectrogram", "waveform", "pitch"], ALL],  # fmt: skip
    ids=lambda f: "+".join(f),
)
def test_every_feature_subset_builds_and_trains(task, features):
    model, _ = build(task, features)
    assert isinstance(model, EchoASRModel) and isinstance(model.frontend, EchoFrontend)
    model.train()
    loss, stats, _ = model(*speech_batch())
    assert torch.isfinite(loss) and stats["loss_ctc"] is not None and stats["loss_att"] is not None
    loss.backward()
    for name in features:
        grads = [p.grad for p in model.frontend.encoders[name].parameters()]
        assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0, name
    if "waveform" in features and "spectrogram" in features:
        assert model.frontend.fusion.blend.weight.grad.abs() > 0


def test_f0_reaches_an_encoder_that_takes_it(task, monkeypatch):
    import espnet2.tasks.asr as asr_task
    from espnet2.asr.encoder.abs_encoder import AbsEncoder

    recorder = type("F0RecorderEncoder", (F0Recorder, AbsEncoder), {})
    monkeypatch.setitem(asr_task.encoder_choices.classes, "f0_recorder", recorder)
    specaug = "{apply_time_warp: false, freq_mask_width_range: [0, 4], time_mask_width_range: [0, 5]}"
    spec = ["--specaug", "specaug", "--specaug_conf", specaug]
    model, _ = build(
        task, ["spectrogram", "waveform"], encoder="f0_recorder", encoder_conf={"output_size": 16}, extra=spec
    )
    assert model.encoder_takes_f0 and model.encoder_wants_f0
    speech, lengths, text, text_lengths = speech_batch()
    model.train()
    model(speech, lengths, text, text_lengths)
    f0 = model.encoder.seen[-1]
    expected = model.frontend.extract(speech, lengths, with_f0=True)
    torch.testing.assert_close(f0, expected.f0)  # untouched by SpecAugment
    assert f0.shape == (3, int(lengths.max()) // 80 + 1)
    voiced = f0[f0 > 0]
    assert 70 < voiced.median() < 250  # male speakers


def test_f0_reaches_the_pitch_aware_echo_encoder(task):
    from echo_plugin.asr.encoder.echo_encoder import EchoEncoder

    conf = {"output_size": 16, "attention_heads": 2, "linear_units": 16, "num_blocks": 1, "input_layer": "conv2d",
            "frame_shift": 0.01,
            "layers": [{"num": 1, "rotary": {"type": "pitch_aware", "conf": {"radii": True}}}]}  # fmt: skip
    model, _ = build(task, ["spectrogram"], encoder="echo", encoder_conf=conf)
    assert isinstance(model.encoder, EchoEncoder) and model.encoder_wants_f0
    seen = {}
    original = model.encoder.forward

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return original(*args, **kwargs)

    model.encoder.forward = spy
    speech, lengths, text, text_lengths = speech_batch()
    loss, _, _ = model(speech, lengths, text, text_lengths)
    loss.backward()
    assert seen["f0"] is not None and seen["f0"].shape == (3, int(lengths.max()) // 80 + 1)
    # f0 changes the pitch-aware encoder's output
    model.eval()
    with torch.no_grad():
        feats, feats_lengths = model.frontend(speech, lengths)
        with_f0 = original(feats, feats_lengths, f0=seen["f0"])[0]
        without = original(feats, feats_lengths, f0=torch.zeros_like(seen["f0"]))[0]
    assert not torch.allclose(with_f0, without)


def test_no_f0_work_for_an_encoder_that_does_not_read_it(task, monkeypatch):
    model, _ = build(task, ["spectrogram"], encoder="echo",
                     encoder_conf={**TRANSFORMER, "layers": [{"num": 1, "rotary": "standard"}]})  # fmt: skip
    assert model.encoder_takes_f0 and not model.encoder_wants_f0
    monkeypatch.setattr(FeatureExtractor, "_world", lambda *a, **k: pytest.fail("f0 computed for nothing"))
    loss, _, _ = model(*speech_batch())
    assert torch.isfinite(loss)


def test_collect_feats_gives_the_fused_frontend_output(task, monkeypatch):
    model, _ = build(task, ["spectrogram", "pitch"])
    model.eval()
    speech, lengths, text, text_lengths = speech_batch()
    with torch.no_grad():
        out = model.collect_feats(speech, lengths, text, text_lengths)
        feats, feats_lengths = model.frontend(speech, lengths)
    assert set(out) == {"feats", "feats_lengths"} and out["feats"].shape[-1] == model.frontend.output_size()
    torch.testing.assert_close(out["feats"], feats)
    assert out["feats_lengths"].tolist() == feats_lengths.tolist()
    # loader-delivered f0 replaces the WORLD analysis
    f0 = model.frontend.extract(speech, lengths, with_f0=True).f0
    monkeypatch.setattr(FeatureExtractor, "_world", lambda *a, **k: pytest.fail("cached pitch was ignored"))
    with torch.no_grad():
        cached = model.collect_feats(speech, lengths, text, text_lengths, pitch=f0, pitch_lengths=feats_lengths)
    torch.testing.assert_close(cached["feats"], feats)


def test_cached_features_through_espnets_data_loader(task, tmp_path, monkeypatch):
    """The documented path: cache scps as extra ``kaldi_ark`` inputs, ESPnet's loader, model(**batch)."""
    from echo_plugin.features.cache import feature_config, write_cache

    features = ["spectrogram", "pitch", "harmonic", "aperiodic"]
    model, args = build(task, features)
    (tmp_path / "wav.scp").write_text("".join(f"{u} {FSDD / (u + '.wav')}\n" for u in UTTS))
    (tmp_path / "text").write_text("".join(f"{u} {t}\n" for u, t in UTTS.items()))
    scps = write_cache(tmp_path / "wav.scp", tmp_path / "feats", ["pitch", "harmonic", "aperiodic"],
                       feature_config(frontend_conf(features)), nj=1)  # fmt: skip
    args.use_preprocessor = True
    ASRTask = task[0]
    loader = ASRTask.build_streaming_iterator(
        data_path_and_name_and_type=[(str(tmp_path / "wav.scp"), "speech", "sound"),
                                     (str(tmp_path / "text"), "text", "text")]
        + [(str(scp), name, "kaldi_ark") for name, scp in scps.items()],  # fmt: skip
        preprocess_fn=ASRTask.build_preprocess_fn(args, train=True),
        collate_fn=ASRTask.build_collate_fn(args, train=True),
        batch_size=3,
        dtype="float32",
        num_workers=0,
        allow_variable_data_keys=True,
    )
    keys, batch = next(iter(loader))
    assert {"pitch", "pitch_lengths", "harmonic", "aperiodic"} <= set(batch)
    speech, lengths, text, text_lengths = speech_batch()
    order = [list(UTTS).index(k) for k in keys]
    torch.testing.assert_close(batch["speech"], speech[order][:, : batch["speech"].size(1)])
    model.eval()
    with torch.no_grad():
        reference, _, _ = model(speech[order], lengths[order], text[order], text_lengths[order])
        monkeypatch.setattr(FeatureExtractor, "_world", lambda *a, **k: pytest.fail("cache ignored"))
        loss, _, _ = model(**batch)
    torch.testing.assert_close(loss, reference)


SINC = {"fs": 8000, "in_channels": 1, "out_channels": 256}  # ESPnet's sinc convolutions: they change the frames


def test_a_preencoder_that_changes_the_frames_is_refused_a_linear_one_is_not(task):
    with pytest.raises(NotImplementedError, match="preencoder.*LightweightSincConvs"):
        build(task, ["spectrogram"], extra=["--preencoder", "sinc", "--preencoder_conf", yaml.safe_dump(SINC)])
    model, _ = build(task, ["spectrogram"], extra=["--preencoder", "linear", "--preencoder_conf",
                                                   "{input_size: 16, output_size: 16}"])
    loss, _, _ = model(*speech_batch())
    assert torch.isfinite(loss)


def test_pitch_aware_encoder_without_the_echo_frontend_is_refused(task):
    ASRTask, workdir = task
    conf = {**TRANSFORMER, "layers": [{"num": 1, "rotary": {"type": "pitch_aware"}}]}
    args = ASRTask.get_parser().parse_args(
        ["--token_list", str(workdir / "tokens.txt"), "--model", "echo", "--frontend", "default",
         "--frontend_conf", "{fs: 8000, n_fft: 256, hop_length: 80, n_mels: 20}", "--normalize", "none",
         "--encoder", "echo", "--encoder_conf", yaml.safe_dump(conf),
         "--decoder", "transformer", "--decoder_conf", yaml.safe_dump(DECODER)]
    )  # fmt: skip
    with pytest.raises(ValueError, match="model_conf f0"):
        ASRTask.build_model(args)


def default_frontend_args(ASRTask, workdir, encoder: str, encoder_conf: dict, model_conf: dict):
    return ASRTask.get_parser().parse_args(
        ["--token_list", str(workdir / "tokens.txt"), "--model", "echo", "--frontend", "default",
         "--frontend_conf", "{fs: 8000, n_fft: 256, hop_length: 80, n_mels: 20}", "--normalize", "none",
         "--encoder", encoder, "--encoder_conf", yaml.safe_dump(encoder_conf),
         "--decoder", "transformer", "--decoder_conf", yaml.safe_dump(DECODER),
         "--model_conf", yaml.safe_dump(model_conf)]
    )  # fmt: skip


def test_model_conf_f0_gives_the_default_frontend_world_f0_on_its_frames(task, monkeypatch):
    """model_conf f0: the model computes WORLD f0 on the default frontend's grid; feats are ESPnet's own."""
    import espnet2.tasks.asr as asr_task
    from espnet2.asr.encoder.abs_encoder import AbsEncoder

    from echo_plugin.features.grid import FrameGrid
    from echo_plugin.features.pitch import F0Config, extract_f0

    ASRTask, workdir = task
    recorder = type("F0RecorderEncoder", (F0Recorder, AbsEncoder), {})
    monkeypatch.setitem(asr_task.encoder_choices.classes, "f0_recorder", recorder)
    f0_conf = {"method": "dio", "floor": 60.0, "ceil": 300.0}
    model = ASRTask.build_model(default_frontend_args(ASRTask, workdir, "f0_recorder", {"output_size": 16},
                                                      {"ctc_weight": 0.3, "f0": f0_conf}))
    speech, lengths, text, text_lengths = speech_batch()
    model(speech, lengths, text, text_lengths)
    f0 = model.encoder.seen[-1]
    feats, feats_lengths = model.frontend(speech, lengths)
    assert f0.shape == feats.shape[:2]
    grid = FrameGrid(fs=8000, n_fft=256, hop_length=80)
    for i, n in enumerate(lengths.tolist()):
        expect = extract_f0(speech[i, :n].numpy(), grid, F0Config(**f0_conf))
        frames = int(feats_lengths[i])
        torch.testing.assert_close(f0[i, :frames], torch.from_numpy(expect[:frames]))
        assert torch.all(f0[i, frames:] == 0)
    assert 70 < f0[f0 > 0].median() < 250  # male speakers


def test_pitch_aware_encoder_on_the_default_frontend_with_model_conf_f0(task):
    ASRTask, workdir = task
    conf = {**TRANSFORMER, "frame_shift": 0.01,
            "layers": [{"num": 1, "rotary": {"type": "pitch_aware", "conf": {"radii": True, "pitch_bias": 1.0}}}]}
    model = ASRTask.build_model(default_frontend_args(ASRTask, workdir, "echo", conf,
                                                      {"ctc_weight": 0.3, "f0": {"method": "dio"}}))
    assert model.encoder.needs_f0 and model.pitch is not None
    loss, _, _ = model(*speech_batch())
    loss.backward()
    assert torch.isfinite(loss)


def test_model_conf_f0_with_a_frame_changing_preencoder_is_refused(task):
    ASRTask, workdir = task
    args = default_frontend_args(ASRTask, workdir, "echo", {**TRANSFORMER, "input_layer": "linear"},
                                 {"ctc_weight": 0.3, "f0": {"method": "dio"}})
    args.preencoder, args.preencoder_conf = "sinc", SINC
    with pytest.raises(NotImplementedError, match="preencoder"):
        ASRTask.build_model(args)


def test_model_conf_f0_through_a_linear_preencoder_reaches_the_pitch_aware_encoder(task):
    ASRTask, workdir = task
    conf = {**TRANSFORMER, "frame_shift": 0.01,
            "layers": [{"num": 1, "rotary": {"type": "pitch_aware", "conf": {"radii": True, "pitch_bias": 1.0}}}]}
    args = default_frontend_args(ASRTask, workdir, "echo", conf, {"ctc_weight": 0.3, "f0": {"method": "dio"}})
    args.preencoder, args.preencoder_conf = "linear", {"input_size": 20, "output_size": 24}
    model = ASRTask.build_model(args)
    loss, _, _ = model(*speech_batch())
    loss.backward()
    assert torch.isfinite(loss) and model.encoder.embed is not None


def test_an_encoder_frame_shift_other_than_the_f0_hop_is_refused(task):
    ASRTask, workdir = task
    conf = {**TRANSFORMER, "frame_shift": 0.02, "layers": [{"num": 1, "rotary": {"type": "pitch_aware"}}]}
    with pytest.raises(ValueError, match="frame_shift 0.02 s is not the frontend's hop 0.01 s"):
        ASRTask.build_model(default_frontend_args(ASRTask, workdir, "echo", conf,
                                                  {"ctc_weight": 0.3, "f0": {"method": "dio"}}))


def test_model_conf_f0_with_the_echo_frontend_is_refused(task):
    with pytest.raises(ValueError, match="frontend_conf f0"):
        build(task, ["spectrogram"], extra=["--model_conf", "{f0: {method: dio}}"])


def test_intermediate_ctc_works(task):
    conf = {**TRANSFORMER, "num_blocks": 2, "interctc_layer_idx": [1], "interctc_use_conditioning": True}
    model, _ = build(task, ["spectrogram", "pitch"], encoder_conf=conf, extra=["--model_conf", "interctc_weight=0.5"])
    loss, stats, _ = model(*speech_batch())
    assert torch.isfinite(loss)
    loss.backward()


def test_other_frontends_keep_espnets_encode(task):
    from espnet2.asr.espnet_model import ESPnetASRModel

    ASRTask, workdir = task
    args = ASRTask.get_parser().parse_args(
        ["--token_list", str(workdir / "tokens.txt"), "--model", "echo", "--frontend", "default",
         "--frontend_conf", "{fs: 8000, n_fft: 256, hop_length: 80, n_mels: 20}", "--normalize", "none",
         "--encoder", "transformer", "--encoder_conf", yaml.safe_dump(TRANSFORMER),
         "--decoder", "transformer", "--decoder_conf", yaml.safe_dump(DECODER)]
    )  # fmt: skip
    model = ASRTask.build_model(args).eval()
    assert not model.frontend_extracts
    speech, lengths, _, _ = speech_batch()
    with torch.no_grad():
        ours = model.encode(speech, lengths)[0]
        theirs = ESPnetASRModel.encode(model, speech, lengths)[0]
    torch.testing.assert_close(ours, theirs)
