"""Print every table of :mod:`echo_plugin.catalog` and the names each accepts in YAML.

    python -m echo_plugin.bin.list_registries

One line per table: ``<kind> (<where in YAML>): name, name, ...``; the
``espnet ...`` lines are the classes ``echo_plugin.register()`` adds to ESPnet's
choice tables. Variants added by other packages' ``echo_plugin.variants`` entry
points are listed with the built-in ones.
"""
from __future__ import annotations

from typing import Iterator

from echo_plugin import catalog


def lines() -> Iterator[str]:
    """The printed lines, in order."""
    for table in catalog.TABLES:
        where = f" ({table.where})" if table.where else ""
        yield f"{table.kind}{where}: {', '.join(table.names())}"


def main() -> None:
    for line in lines():
        print(line)


if __name__ == "__main__":
    main()
