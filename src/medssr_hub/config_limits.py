"""Bounds on what a config may expand to: a YAML file or a command-line mapping is small, so aliases that
expand past memory, or nesting past Python's recursion, are one line, not a crash."""

from __future__ import annotations

import os
from typing import Any

import yaml

from medssr_hub.errors import InputError

# A config is small: these bound what a YAML file or a command-line mapping may expand to (aliases count
# every time they are used: a 1 KB "billion laughs" file expands past any memory) and how deep it nests.
MAX_CONFIG_NODES = int(os.environ.get("MEDSSR_MAX_CONFIG_NODES", "100000"))
MAX_CONFIG_DEPTH = int(os.environ.get("MEDSSR_MAX_CONFIG_DEPTH", "64"))


def bounded(value: Any, where: str) -> Any:
    """`value` (parsed YAML or JSON) if it has at most MAX_CONFIG_NODES values, aliases expanded, nested at
    most MAX_CONFIG_DEPTH deep; else a InputError naming `where`. Iterative: a self-referencing alias, or
    5,000 levels, is counted, never recursed into."""
    stack, nodes = [(value, 1)], 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > MAX_CONFIG_NODES:
            raise InputError(
                f"{where}: expands to more than {MAX_CONFIG_NODES:,} values (YAML aliases count each time they "
                "are used); a config is not that big ($MEDSSR_MAX_CONFIG_NODES)"
            )
        if depth > MAX_CONFIG_DEPTH:
            raise InputError(
                f"{where}: nested deeper than {MAX_CONFIG_DEPTH} levels ($MEDSSR_MAX_CONFIG_DEPTH)"
            )
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for kv in item.items() for v in kv)
        elif isinstance(item, list | tuple | set):
            stack.extend((v, depth + 1) for v in item)
    return value


def load_yaml_text(text: str, where: str) -> Any:
    """yaml.safe_load, bounded (`bounded`); a document nested past Python's recursion limit is a InputError."""
    try:
        return bounded(yaml.safe_load(text), where)
    except RecursionError as e:
        raise InputError(f"{where}: nested too deep to read") from e
