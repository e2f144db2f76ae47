"""Adaptive attention through ESPnet: per-layer-group self/cross attention types from YAML,
forward/backward in encoder and decoder, ``model: echo`` feeding the training loss to the span
refiners (not in eval), checkpoint round trip, and the FSDD adaptive config."""
from __future__ import annotations

from pathlib import Path

import torch
import yaml

import echo_plugin
from echo_plugin.nn.attention.adaptive import AdaptiveAttention
from echo_plugin.nn.attention.standard import MultiHeadAttention
from echo_plugin.recipe.overlay import load_config
from test.asr.espnet_build import TOKENS

REPO = Path(__file__).resolve().parents[2]
ADAPTIVE_SPAN = {"type": "adaptive", "conf": {"span": {"init": 3, "interval": 2, "epsilon": 0.0},
                                             "focus": {"w_min": 1, "w_max": 4}, "importance": False}}
ADAPTIVE_ROUTED = {"type": "adaptive", "conf": {"span": False, "focus": False,
                                               "importance": {"fraction": 0.5, "select": "topk"}}}
ADAPTIVE_CROSS = {"type": "adaptive", "conf": {"span": False, "focus": False,
                                              "importance": {"fraction": 0.5, "cheap": "mean"}}}
CONFIG = {
    "model": "echo",
    "normalize": None,
    "input_size": 20,
    "token_type": "char",
    "encoder": "echo",
    "encoder_conf": {
        "output_size": 16, "attention_heads": 2, "linear_units": 32, "num_blocks": 3, "input_layer": "conv2d2",
        "layers": [{"num": 2, "attention": ADAPTIVE_SPAN}, {"num": 1, "attention": ADAPTIVE_ROUTED}],
    },
    "decoder": "echo",
    "decoder_conf": {
        "attention_heads": 2, "linear_units": 32, "num_blocks": 3,
        "layers": [
            {"num": 1, "self_attention": ADAPTIVE_SPAN, "cross_attention": "standard"},
            {"num": 2, "self_attention": "standard", "cross_attention": ADAPTIVE_CROSS},
        ],
    },
    "model_conf": {"ctc_weight": 0.3},
}  # fmt: skip


def build(tmp_path: Path):
    echo_plugin.register()
    from espnet2.tasks.asr import ASRTask

    (tmp_path / "tokens.txt").write_text("\n".join(TOKENS) + "\n")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    args = ASRTask.get_parser().parse_args(
        ["--config", str(tmp_path / "config.yaml"), "--token_list", str(tmp_path / "tokens.txt")]
    )
    torch.manual_seed(0)
    return ASRTask, args, ASRTask.build_model(args)


def batch():
    torch.manual_seed(1)
    return dict(
        speech=torch.randn(2, 60, 20),
        speech_lengths=torch.tensor([60, 41]),
        text=torch.tensor([[2, 3, 4, 5], [6, 2, -1, -1]]),
        text_lengths=torch.tensor([4, 2]),
    )


def test_yaml_sets_self_and_cross_attention_per_layer_group(tmp_path):
    _, _, model = build(tmp_path)
    encoder = [type(block.self_attn) for block in model.encoder.blocks]
    assert encoder == [AdaptiveAttention, AdaptiveAttention, AdaptiveAttention]
    assert [block.self_attn.span_refiner is not None for block in model.encoder.blocks] == [True, True, False]
    assert [block.self_attn.importance is not None for block in model.encoder.blocks] == [False, False, True]
    decoder_self = [type(block.self_attn) for block in model.decoder.blocks]
    decoder_cross = [type(block.cross_attn) for block in model.decoder.blocks]
    assert decoder_self == [AdaptiveAttention, MultiHeadAttention, MultiHeadAttention]
    assert decoder_cross == [MultiHeadAttention, AdaptiveAttention, AdaptiveAttention]
    first = model.decoder.blocks[0].self_attn
    assert first.span_refiner.half_width == 3 and first.focus.w_max == 4.0
    assert model.decoder.blocks[1].cross_attn.importance.cheap == "mean"


def refiners(model):
    return [m for m in model.modules() if hasattr(m, "observe_loss")]


def test_training_reaches_every_adaptive_part_and_feeds_the_loss_to_the_refiners(tmp_path):
    _, _, model = build(tmp_path)
    assert len(refiners(model)) == 3  # two encoder layers, the first decoder layer's self-attention
    model.train()
    for _step in range(2):  # interval 2: the second loss makes a decision
        model.zero_grad()
        loss, stats, _ = model(**batch())
        assert torch.isfinite(loss) and stats["loss_att"] is not None
        loss.backward()
    for name in [
        "encoder.blocks.0.self_attn.focus.proj.weight",
        "encoder.blocks.2.self_attn.importance.scorer.weight",
        "decoder.blocks.0.self_attn.focus.proj.weight",
        "decoder.blocks.1.cross_attn.importance.scorer.weight",
    ]:
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    for refiner in refiners(model):
        assert float(refiner.decisions) == 1 and float(refiner.last_loss) > 0


def test_eval_passes_leave_the_refiners_alone_and_checkpoints_round_trip(tmp_path):
    ASRTask, args, model = build(tmp_path)
    model.train()
    for _ in range(4):
        model(**batch())
    model.eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with torch.no_grad():
        model(**batch())
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], equal_nan=True, msg=name)
    rebuilt = ASRTask.build_model(args)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    for ours, theirs in zip(refiners(model), refiners(rebuilt)):
        torch.testing.assert_close(theirs.q_table, ours.q_table)
        assert float(theirs.span) == float(ours.span) and float(theirs.last_state) == float(ours.last_state)
    rebuilt.eval()
    speech = batch()
    with torch.no_grad():
        torch.testing.assert_close(
            rebuilt.encode(speech["speech"], speech["speech_lengths"])[0],
            model.encode(speech["speech"], speech["speech_lengths"])[0],
        )


def test_fsdd_adaptive_config_changes_only_the_attention_specs():
    conf_dir = REPO / "egs/fsdd/asr1/conf/tuning"
    base = load_config(conf_dir / "train_asr_echo.yaml")
    adaptive = load_config(conf_dir / "train_asr_echo_adaptive.yaml")  # an overlay of the default
    assert adaptive["model"] == base["model"] == "echo"
    base_layers = base["encoder_conf"].pop("layers")
    layers = adaptive["encoder_conf"].pop("layers")
    adaptive["decoder_conf"].pop("layers")
    assert adaptive == base
    assert sum(group["num"] for group in layers) == adaptive["encoder_conf"]["num_blocks"]
    assert all(group["rotary"] == base_layers[0]["rotary"] for group in layers)  # same rotary as the baseline
