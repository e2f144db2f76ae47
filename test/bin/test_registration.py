"""Registration: idempotent, type-checked, and done by both entry points at import."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import echo_plugin
from echo_plugin import catalog
from echo_plugin.inference.strict_load import WeightMismatchError, load_strict
from echo_plugin.registry import Registry

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs" / "fsdd" / "asr1"


def test_register_adds_echo_and_is_idempotent() -> None:
    echo_plugin.register()
    echo_plugin.register()
    import espnet2.tasks.asr as asr_task

    for table, classes in catalog.ESPNET_CHOICES.items():
        choices = getattr(asr_task, table)
        for name, cls in classes.items():
            assert choices.get_class(name) is cls
            assert issubclass(cls, choices.base_type)


def test_register_refuses_a_class_of_the_wrong_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(echo_plugin, "_REGISTERED", False)
    bogus = Registry("espnet encoder_choices")
    bogus.add("bogus", torch.nn.Linear)
    monkeypatch.setattr(catalog, "ESPNET_CHOICES", {"encoder_choices": bogus})
    with pytest.raises(TypeError, match="AbsEncoder"):
        echo_plugin.register()


@pytest.mark.parametrize("entry", ["asr_train", "asr_inference"])
def test_entry_points_register_before_espnet_parses(entry: str, tmp_path: Path) -> None:
    """ESPnet's parser only accepts ``--encoder echo`` if registration came first."""
    code = (
        f"import echo_plugin.bin.{entry}, espnet2.tasks.asr as t; "
        "print(t.encoder_choices.get_class('echo').__name__, t.decoder_choices.get_class('echo').__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "EchoEncoder EchoDecoder"


def test_entry_points_patch_only_the_decoding_clis_speech2text() -> None:
    """ESPnet's ASRTask keeps its own (lenient) build_model_from_file in every entry point; the one patch left is
    the name Speech2Text in espnet2.bin.asr_inference, rebound by the decoding CLI (echo_plugin.espnet_patches)."""
    code = (
        "import echo_plugin.bin.asr_train, echo_plugin.bin.speaker_adapt, echo_plugin.bin.plot_attention; "
        "from espnet2.bin import asr_inference; from espnet2.tasks.asr import ASRTask; "
        "from espnet2.tasks.abs_task import AbsTask; "
        "from echo_plugin.tasks.asr import EchoASRTask; "
        "print(ASRTask.build_model_from_file.__func__ is AbsTask.build_model_from_file.__func__, "
        "asr_inference.Speech2Text.__name__, echo_plugin.bin.asr_train.get_parser is not None, "
        "issubclass(EchoASRTask, ASRTask)); "
        "import echo_plugin.bin.asr_inference; print(asr_inference.Speech2Text.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-2:] == ["True Speech2Text True True", "EchoSpeech2Text"]


def test_train_entry_point_accepts_the_echo_config(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("<blank>\n<unk>\na\n<sos/eos>\n")
    out = subprocess.run(
        [sys.executable, "-m", "echo_plugin.bin.asr_train", "--print_config", "--config",
         str(RECIPE / "conf" / "tuning" / "train_asr_echo.yaml"), "--token_list", str(tokens)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "encoder: echo" in out.stdout and "decoder: echo" in out.stdout


def test_strict_loading_names_missing_and_unexpected_keys(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    state = model.state_dict()
    state["9.weight"] = state.pop("1.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(WeightMismatchError, match=r"missing \['1.weight'\].*unexpected \['9.weight'\]"):
        load_strict(model, tmp_path / "renamed.pth")
    torch.save(model.state_dict(), tmp_path / "good.pth")
    load_strict(model, tmp_path / "good.pth")
