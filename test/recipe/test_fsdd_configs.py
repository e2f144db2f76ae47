"""Every FSDD ablation config differs from the Echo default by its mechanism alone (same budget, same data).

The ablations are overlays of the default (``base: train_asr_echo.yaml``), read through
echo_plugin.recipe.overlay.load_config as the recipe reads them. The Whisper fine-tuning family
(seed 05's experiment) is the same with its own base, ``train_asr_whisper_single.yaml``: the dual
decoder and the widened single one change the decoder alone."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

import pytest

from echo_plugin.recipe.overlay import load_config, read_yaml

CONF = Path(__file__).resolve().parents[2] / "egs" / "fsdd" / "asr1" / "conf" / "tuning"
BASE = "train_asr_echo.yaml"
ESPNET_MODEL = {"encoder", "encoder_conf", "decoder", "decoder_conf"}
ESPNET_BASELINES = {"train_asr_transformer.yaml", "train_asr_conformer.yaml", "train_asr_e_branchformer.yaml"}
PITCH = {"encoder_conf.layers", "encoder_conf.frame_shift", "model_conf.f0"}  # a pitch-aware rotary and the f0 it reads
# config -> the top-level keys or dotted paths it may change (and must change some of)
ALLOWED: Dict[str, set] = {
    "train_asr_echo_rope_none.yaml": {"encoder_conf.layers"},
    "train_asr_echo_rope_learned.yaml": {"encoder_conf.layers"},
    "train_asr_echo_rope_mel.yaml": {"encoder_conf.layers"},
    "train_asr_echo_rope_givens.yaml": {"encoder_conf.layers"},
    "train_asr_echo_rope_quaternion.yaml": {"encoder_conf.layers"},
    "train_asr_echo_rope_quaternion12.yaml": {"encoder_conf.layers"},
    "train_asr_echo_rope_axial.yaml": {"encoder_conf.layers", "encoder_conf.input_layer"},
    "train_asr_echo_pitch_rope.yaml": PITCH,
    "train_asr_echo_pitch_theta.yaml": PITCH,
    "train_asr_echo_pitch_phase.yaml": PITCH,
    "train_asr_echo_pitch_bias.yaml": PITCH,
    "train_asr_echo_pitch_doc.yaml": PITCH,
    "train_asr_echo_soft_mask.yaml": {"encoder_conf.layers", "encoder_conf.silence_threshold", "decoder_conf.layers"},
    "train_asr_echo_se_conv.yaml": {"encoder_conf.input_layer"},
    "train_asr_echo_gates.yaml": {"encoder_conf.layers"},
    "train_asr_echo_t_gate.yaml": {"encoder_conf.layers"},
    "train_asr_echo_c_gate.yaml": {"encoder_conf.layers"},
    "train_asr_echo_m_gate.yaml": {"encoder_conf.layers"},
    "train_asr_echo_additive_gate.yaml": {"encoder_conf.layers"},
    "train_asr_echo_rms_norm.yaml": {"encoder_conf.norm", "decoder_conf.norm"},
    "train_asr_echo_tied.yaml": {"decoder_conf.tie_embeddings"},
    "train_asr_echo_seed1.yaml": {"seed"},
    "train_asr_echo_multifeature.yaml": {"frontend", "frontend_conf"},
    # a pretrained front end: its features, their SpecAugment, ESPnet's projection and input layer for them
    "train_asr_echo_whisper_frontend.yaml": {"frontend", "frontend_conf", "specaug", "specaug_conf",
                                             "preencoder", "preencoder_conf", "encoder_conf.input_layer"},
    "train_asr_echo_curiosity.yaml": {"encoder_conf.layers"},
    "train_asr_echo_curiosity_features.yaml": {"encoder_conf.layers"},
    "train_asr_echo_integrated.yaml": {"encoder_conf.layers"},
    "train_asr_echo_myelinated.yaml": {"encoder_conf.layers"},
    "train_asr_echo_adaptive.yaml": {"encoder_conf.layers", "decoder_conf.layers"},
    "train_asr_echo_maxfactor.yaml": {"optim", "optim_conf"},
    "train_asr_echo_dual.yaml": {"decoder", "decoder_conf"},
    "train_asr_echo_single_wide.yaml": {"decoder_conf.linear_units"},
    "train_asr_transformer.yaml": ESPNET_MODEL,
    "train_asr_conformer.yaml": ESPNET_MODEL,
    "train_asr_e_branchformer.yaml": ESPNET_MODEL,
}

# ESPnet's models over the default's frozen whisper-base front end: the model on top alone differs
FRONTEND_BASE = "train_asr_echo_whisper_frontend.yaml"
ON_FRONTEND: Dict[str, set] = {"train_asr_e_branchformer_whisper_frontend.yaml": ESPNET_MODEL,
                               "train_asr_conformer_whisper_frontend.yaml": ESPNET_MODEL}

# A mechanism's overlay of the filterbank base applied to the default (apply:): its claim on the default
ON_DEFAULT = sorted(p.name for p in CONF.glob("train_asr_echo_whisper_frontend_*.yaml"))

WHISPER_BASE = "train_asr_whisper_single.yaml"
WHISPER: Dict[str, set] = {
    "train_asr_whisper_dual.yaml": {"decoder_conf", "freeze_param"},
    "train_asr_whisper_single_wide.yaml": {"decoder_conf.extra_linear_units"},
}


def flatten(config: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested mappings -> {dotted path: leaf value}; lists are leaves."""
    out: Dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def changes(name: str, base_name: str = BASE) -> Dict[str, Any]:
    """{dotted path: new value} of every path where ``name``'s merged config differs from ``base_name``'s."""
    base = flatten(load_config(CONF / base_name))
    other = flatten(load_config(CONF / name))
    return {path: other.get(path, "<absent>") for path in base.keys() | other.keys()
            if base.get(path, "<absent>") != other.get(path, "<absent>")}


def changed_paths(name: str, base_name: str = BASE) -> set:
    return set(changes(name, base_name))


def within(path: str, allowed: set) -> bool:
    return any(path == a or path.startswith(f"{a}.") for a in allowed)


def test_every_config_of_the_recipe_is_listed() -> None:
    assert {p.name for p in CONF.glob("*.yaml")} == (set(ALLOWED) | {BASE} | set(WHISPER) | {WHISPER_BASE}
                                                     | set(ON_FRONTEND) | set(ON_DEFAULT))


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_config_changes_only_its_mechanism(name: str) -> None:
    changed = changed_paths(name)
    assert changed, f"{name} is the same as {BASE}"
    assert {path for path in changed if not within(path, ALLOWED[name])} == set(), name


def test_the_base_is_model_echo_with_speaker_normalizable_frontend() -> None:
    """speaker_mvn (run.sh) needs model: echo in every config."""
    for path in CONF.glob("*.yaml"):
        assert load_config(path).get("model") == "echo", path.name


@pytest.mark.parametrize("name", sorted(set(ALLOWED) - ESPNET_BASELINES))
def test_every_ablation_is_an_overlay_of_the_default(name: str) -> None:
    """A change to train_asr_echo.yaml reaches every ablation; the ESPnet baselines are whole configs."""
    assert read_yaml(CONF / name).get("base") == BASE, f"{name} must start from base: {BASE}"


def test_the_default_and_the_espnet_baselines_are_whole_configs() -> None:
    for name in (BASE, *ESPNET_BASELINES, WHISPER_BASE):
        assert "base" not in read_yaml(CONF / name), name


@pytest.mark.parametrize("name", sorted(WHISPER))
def test_whisper_configs_change_only_the_decoder(name: str) -> None:
    """Same data, noise, epochs, batches and optimizer as the single decoder: the recipe map included."""
    assert read_yaml(CONF / name).get("base") == WHISPER_BASE
    changed = changed_paths(name, WHISPER_BASE)
    assert changed and {path for path in changed if not within(path, WHISPER[name])} == set(), name
    assert "recipe" not in read_yaml(CONF / name), name


@pytest.mark.parametrize("name", sorted(ON_FRONTEND))
def test_baselines_on_the_pretrained_front_end_change_only_the_model_on_top(name: str) -> None:
    """Same features, SpecAugment, projection, data (the recipe map), optimizer and epochs as the default."""
    assert read_yaml(CONF / name).get("base") == FRONTEND_BASE
    changed = changed_paths(name, FRONTEND_BASE)
    assert changed and {path for path in changed if not within(path, ON_FRONTEND[name])} == set(), name
    assert "recipe" not in read_yaml(CONF / name), name



# The Whisper frontend's frame rate where a pitch mechanism names the filterbank's (f0 on the frontend's frames)
WHISPER_FRAMES = {"encoder_conf": {"frame_shift": 0.02}}


@pytest.mark.parametrize("name", ON_DEFAULT)
def test_a_mechanism_on_the_default_changes_what_it_changes_on_the_filterbank_base(name: str) -> None:
    """train_asr_echo_whisper_frontend_<m>.yaml = the default + train_asr_echo_<m>.yaml's own change, nothing else
    (a pitch mechanism's frame_shift set to the Whisper frontend's hop)."""
    mechanism = "train_asr_echo_" + name[len("train_asr_echo_whisper_frontend_"):]
    assert mechanism in ALLOWED and mechanism not in ESPNET_BASELINES
    expected = changes(mechanism, BASE)
    own = {"base": FRONTEND_BASE, "apply": [mechanism]}
    if "encoder_conf.frame_shift" in expected:
        expected["encoder_conf.frame_shift"] = WHISPER_FRAMES["encoder_conf"]["frame_shift"]
        own.update(WHISPER_FRAMES)
    assert read_yaml(CONF / name) == own, name
    assert changes(name, FRONTEND_BASE) == expected != {}
