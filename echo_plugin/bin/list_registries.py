"""Print every Echo registry and the names each accepts in YAML.

    python -m echo_plugin.bin.list_registries
"""
from __future__ import annotations

import echo_plugin.nn.attention  # noqa: F401  (fills the registries)
import echo_plugin.nn.gates  # noqa: F401
import echo_plugin.nn.masking  # noqa: F401
import echo_plugin.nn.rotary  # noqa: F401
from echo_plugin import components
from echo_plugin.asr.frontend.fusion import FUSION
from echo_plugin.nn.registries import ATTENTION, GATE, MASKING, ROTARY


def main() -> None:
    for registry in (ROTARY, ATTENTION, MASKING, GATE, FUSION):
        print(f"{registry.kind}: {', '.join(registry.names())}")
    for table, classes in components().items():
        print(f"espnet {table}: {', '.join(sorted(classes))}")


if __name__ == "__main__":
    main()
