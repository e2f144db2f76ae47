"""The catalog: explicit per-kind tables, and variants that other packages add through entry points."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
import torch

from echo_plugin import catalog
from echo_plugin.features.extractor import FEATURES
from echo_plugin.registry import UnknownNameError

REPO = Path(__file__).resolve().parents[1]


def test_every_table_imports_its_classes_and_each_is_of_the_kind_base() -> None:
    for table in catalog.TABLES:
        assert table.names(), table.kind
        for name, cls in table.items():
            assert table.base is None or issubclass(cls, table.base), (table.kind, name)
    assert set(catalog.FEATURE_ENCODER.names()) == set(FEATURES)
    assert set(catalog.ESPNET_CHOICES["normalize_choices"].names()) == {"speaker_mvn", "speech_mvn"}


def test_unknown_names_wrong_bases_and_taken_names_are_refused() -> None:
    where = r"\(layers\[\].rotary, attention conf rotary_k\)"
    with pytest.raises(UnknownNameError, match=rf"unknown rotary type 'nope' {where}; known: axial, givens, "):
        catalog.ROTARY.get("nope")
    with pytest.raises(ValueError, match=r"unknown norm type 'batch_norm' \(.*\); known: layer_norm, rms_norm"):
        catalog.NORM.get("batch_norm")  # a ValueError as the old lookups raised
    with pytest.raises(TypeError, match="rotary 'linear': Linear is not a Rotary"):
        catalog.ROTARY.add("linear", torch.nn.Linear)
    with pytest.raises(KeyError, match="rotary 'standard' is already registered to StandardRotary"):
        catalog.ROTARY.add("standard", catalog.ROTARY.get("none"))
    catalog.ROTARY.add("standard", catalog.ROTARY.get("standard"))  # the same class again: no error
    with pytest.raises(ValueError, match=r"conf may not set \['head_dim'\]"):
        catalog.ROTARY.build({"type": "standard", "conf": {"head_dim": 4}}, head_dim=8)


def clashing_variants(table: object) -> None:
    table.ROTARY.add("standard", table.ROTARY.get("none"))


def test_a_failing_entry_point_is_named_and_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    catalog.ROTARY.names()  # built-ins (and any installed entry points) loaded first
    entry = metadata.EntryPoint(name="clash", value=f"{__name__}:clashing_variants", group=catalog.VARIANTS_GROUP)
    monkeypatch.setattr(catalog.metadata, "entry_points", lambda group: [entry] if group == entry.group else [])
    monkeypatch.setattr(catalog, "_variants_state", "unloaded")
    for _ in range(2):
        with pytest.raises(RuntimeError, match=r"echo_plugin.variants entry point 'clash = test.test_catalog:"
                                               r"clashing_variants' failed: KeyError: .*already registered"):
            catalog.ATTENTION.get("standard")
    monkeypatch.setattr(catalog.metadata, "entry_points", lambda group: [])  # the package fixed: loads again
    assert catalog.ROTARY.get("standard").__name__ == "StandardRotary"
    assert catalog._variants_state == "loaded"


VARIANTS_PACKAGE = '''
from espnet2.asr.encoder.rnn_encoder import RNNEncoder

from echo_plugin.nn.rotary.none import NoRotary


class ShiftRotary(NoRotary):
    """A user's rotary (it rotates nothing: only its name matters here)."""


class MyEncoder(RNNEncoder):
    pass


def add_variants(catalog):
    catalog.ROTARY.add("shift", ShiftRotary)
    catalog.ESPNET_CHOICES["encoder_choices"].add("my_rnn", MyEncoder)
'''

CHECK = '''
import espnet2.tasks.asr as asr_task

import echo_plugin
from echo_plugin.bin.list_registries import lines
from echo_plugin.catalog import ATTENTION

attention = ATTENTION.build("standard", d_model=8, n_heads=2, rotary="shift")
print("rotary", type(attention.rotary).__name__)
echo_plugin.register()
print("espnet", asr_task.encoder_choices.get_class("my_rnn").__name__)
print("\\n".join(line for line in lines() if line.startswith(("rotary", "espnet encoder"))))
'''


def test_an_installed_package_adds_variants_through_the_entry_point_group(tmp_path: Path) -> None:
    """A fake installed distribution (a dist-info folder with entry_points.txt on sys.path)."""
    (tmp_path / "my_variants").mkdir()
    (tmp_path / "my_variants" / "__init__.py").write_text(VARIANTS_PACKAGE)
    dist = tmp_path / "my_variants-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-variants\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[echo_plugin.variants]\nmine = my_variants:add_variants\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(CHECK)], capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    printed = out.stdout.splitlines()
    assert "rotary ShiftRotary" in printed
    assert "espnet MyEncoder" in printed
    assert any(line.startswith("rotary (") and ", shift," in line for line in printed)
    assert any(line.startswith("espnet encoder_choices: echo, my_rnn, whisper_style") for line in printed)
