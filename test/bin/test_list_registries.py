"""list_registries prints every YAML-selectable name of every table, as a subprocess would see them."""
from __future__ import annotations

import subprocess
import sys


def printed() -> dict[str, set[str]]:
    out = subprocess.run([sys.executable, "-m", "echo_plugin.bin.list_registries"], capture_output=True, text=True,
                         check=True).stdout
    tables = {}
    for line in out.splitlines():
        where, sep, names = line.partition(": ")
        if sep and not line.startswith("Failed to import"):
            tables[where.split(" (")[0]] = set(names.split(", "))
    return tables


def test_every_registry_and_espnet_table_is_listed_with_all_its_names() -> None:
    from echo_plugin.catalog import ATTENTION, CURIOSITY_SCORE, ESPNET_CHOICES, FREEZE, GATE, MASKING, OPTIMIZER, ROTARY

    tables = printed()
    assert tables["rotary"] == set(ROTARY.names()) >= {"standard", "pitch_aware", "quaternion", "givens", "axial"}
    assert tables["attention"] == set(ATTENTION.names()) >= {"myelinated", "integrated", "adaptive", "curiosity"}
    assert tables["masking"] == set(MASKING.names()) == {"hard", "soft"}
    assert tables["gate"] == set(GATE.names()) >= {"t_gate", "m_gate", "c_gate", "mlp_gate"}
    assert tables["curiosity score"] == set(CURIOSITY_SCORE.names()) == {"dot", "cosine", "rbf"}
    assert tables["freeze"] == set(FREEZE.names())
    assert tables["optim"] == set(OPTIMIZER.names()) == {"maxfactor"}
    assert "se_conv" in tables["input layer"] and "rms_norm" in tables["norm"]
    for table, classes in ESPNET_CHOICES.items():
        assert tables[f"espnet {table}"] == set(classes.names())
    assert "speaker_mvn" in tables["espnet normalize_choices"]
    assert "speech_mvn" in tables["espnet normalize_choices"]
