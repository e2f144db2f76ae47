"""A packed Echo model whose weight file predates a refactor (one parameter saved under its old name) fails to load
naming both the missing and the unexpected key, end to end: ESPnet's packer, EchoASRTask.build_model_from_file,
EchoSpeech2Text and the transcriber a user runs. ESPnet's own loader (strict=False) would take it silently,
leaving the renamed parameter at its random initial value; the control below shows that it does."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from echo_plugin.inference.strict_load import WeightMismatchError
from test.asr.espnet_build import build_asr

ENCODER_CONF = "{output_size: 16, attention_heads: 2, linear_units: 32, num_blocks: 1, input_layer: conv2d}"
DECODER_CONF = "{attention_heads: 2, linear_units: 32, num_blocks: 1}"
CURRENT = "decoder.blocks.0.self_attn.query.weight"
OLD_NAME = "decoder.blocks.0.self_attn.q_proj.weight"  # what a model saved before the rename calls it


@pytest.fixture(scope="module")
def packs(tmp_path_factory) -> dict[str, Path]:
    """{"current": archive, "renamed": archive} packed by ESPnet's packer from one tiny Echo model."""
    from espnet2.main_funcs.pack_funcs import pack

    work = tmp_path_factory.mktemp("strict_pack")
    _, args, model = build_asr(work, ENCODER_CONF, DECODER_CONF)
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(vars(args)))
    state = model.state_dict()
    assert CURRENT in state and OLD_NAME not in state
    renamed = dict(state)
    renamed[OLD_NAME] = renamed.pop(CURRENT)
    archives = {}
    for name, weights in (("current", state), ("renamed", renamed)):
        model_file = work / f"{name}.pth"
        torch.save(weights, model_file)
        archives[name] = work / f"{name}.zip"
        pack(files={"asr_model_file": model_file}, yaml_files={"asr_train_config": config}, outpath=archives[name])
    return archives


def unpacked(archive: Path, dest: Path) -> tuple[str, str]:
    from espnet2.main_funcs.pack_funcs import unpack

    files = unpack(archive, dest)
    return files["asr_train_config"], files["asr_model_file"]


def test_a_renamed_parameter_fails_naming_both_keys(packs, tmp_path: Path) -> None:
    from echo_plugin.tasks.asr import EchoASRTask

    config, model_file = unpacked(packs["renamed"], tmp_path)
    with pytest.raises(WeightMismatchError) as raised:
        EchoASRTask.build_model_from_file(config, model_file, "cpu")
    message = str(raised.value)
    assert f"missing ['{CURRENT}'] (1)" in message and f"unexpected ['{OLD_NAME}'] (1)" in message
    assert model_file in message


def test_the_current_pack_loads_every_weight(packs, tmp_path: Path) -> None:
    from echo_plugin.inference.speaker_speech2text import EchoSpeech2Text
    from echo_plugin.tasks.asr import EchoASRTask

    config, model_file = unpacked(packs["current"], tmp_path)
    saved = torch.load(model_file, map_location="cpu", weights_only=True)
    model, _ = EchoASRTask.build_model_from_file(config, model_file, "cpu")
    decoder = EchoSpeech2Text(config, model_file, beam_size=1).asr_model
    for built in (model, decoder):
        assert built.state_dict().keys() == saved.keys()
        assert all(torch.equal(built.state_dict()[k], v) for k, v in saved.items())


def test_echo_speech2text_refuses_the_renamed_pack_and_espnets_class_stays_lenient(packs, tmp_path: Path) -> None:
    """EchoSpeech2Text loads strictly without changing ESPnet's ASRTask or Speech2Text for anybody else."""
    from espnet2.bin.asr_inference import Speech2Text

    from echo_plugin.inference.speaker_speech2text import EchoSpeech2Text

    config, model_file = unpacked(packs["renamed"], tmp_path)
    with pytest.raises(WeightMismatchError, match=rf"missing \['{CURRENT}'\].*unexpected \['{OLD_NAME}'\]"):
        EchoSpeech2Text(config, model_file, beam_size=1)
    Speech2Text(config, model_file, beam_size=1)  # ESPnet's, strict=False: no error
    with pytest.raises(ValueError, match="hugging_face_decoder"):
        EchoSpeech2Text(config, model_file, hugging_face_decoder=True)


def test_espnets_own_loader_takes_the_renamed_pack_silently(packs, tmp_path: Path) -> None:
    """The control: ESPnet's ASRTask misses the mismatch and the parameter is not the saved one."""
    from espnet2.tasks.asr import ASRTask

    config, model_file = unpacked(packs["renamed"], tmp_path)
    model, _ = ASRTask.build_model_from_file(config, model_file, "cpu")  # ESPnet's, strict=False
    saved = torch.load(model_file, map_location="cpu", weights_only=True)
    assert not torch.equal(model.state_dict()[CURRENT], saved[OLD_NAME])


def test_the_transcriber_a_user_runs_refuses_the_renamed_pack(packs, tmp_path: Path) -> None:
    from echo_plugin.inference.transcriber import load

    with pytest.raises(WeightMismatchError, match=rf"missing \['{CURRENT}'\].*unexpected \['{OLD_NAME}'\]"):
        load(packs["renamed"], cache_dir=tmp_path / "renamed")
    assert load(packs["current"], cache_dir=tmp_path / "current").model is not None
