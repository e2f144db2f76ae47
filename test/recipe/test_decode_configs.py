"""Every recipe's decoding configs are options ESPnet's decoding CLI takes (asr.sh passes them as --config to
echo_plugin.bin.asr_inference, and transcribe reads the packed copy): a misspelt key would stop stage 6."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted(REPO.glob("egs/*/asr1/conf/decode*.yaml"))


@pytest.fixture(scope="module")
def inference_options() -> set[str]:
    from espnet2.bin.asr_inference import get_parser

    return {action.dest for action in get_parser()._actions}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_decoding_config_keys_are_espnet_options(config: Path, inference_options: set[str]) -> None:
    keys = set(yaml.safe_load(config.read_text(encoding="utf-8")) or {})
    assert keys and keys <= inference_options, sorted(keys - inference_options)


def test_the_int8_configs_ask_espnet_for_quantization() -> None:
    int8 = [c for c in CONFIGS if "int8" in c.name]
    assert int8
    for config in int8:
        options = yaml.safe_load(config.read_text(encoding="utf-8"))
        assert options["quantize_asr_model"] is True and options["quantize_dtype"] == "qint8", config
