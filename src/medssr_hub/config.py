"""What every stage config shares: YAML loading with CLI overrides, and the guard on resumed runs."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from medssr_hub.utils import atomic_write_json


class YamlConfig:
    """Mixin for config dataclasses: `from_yaml(path, **overrides)`; unknown keys are an error."""

    @classmethod
    def from_yaml(cls, path: str | Path | None, **overrides: Any):
        data = (yaml.safe_load(Path(path).read_text()) if path else None) or {}
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown config keys {sorted(unknown)}; known: {sorted(known)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**data)
        config.validate()
        return config

    def validate(self) -> None:
        """Subclasses raise ValueError for settings that cannot work."""


def guard_resume(
    output_dir: str | Path, fingerprint: dict[str, Any], what: str, error: type[Exception] = RuntimeError
) -> None:
    """Refuse to resume into a folder written with other settings; record the settings of a new run."""
    run_file = Path(output_dir) / "run.json"
    if run_file.exists():
        previous = json.loads(run_file.read_text())
        if previous != fingerprint:
            changed = sorted(
                k for k in set(previous) | set(fingerprint) if previous.get(k) != fingerprint.get(k)
            )
            raise error(
                f"{output_dir} holds a {what} run with other settings ({', '.join(changed)}); "
                "use another output folder or delete it"
            )
    atomic_write_json(run_file, fingerprint)
