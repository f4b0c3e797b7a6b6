"""What a stage publishes of its config: credentials redacted, machine-local keys dropped, local paths and
server addresses masked. Ground layer: the one place that decides it, for cards, `medssr_config.json`,
results and leaderboards alike."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from medssr_hub.resume import config_dict

# A credential's key: `token` as a word of it (hub_token, HF_TOKEN, access-token), a secret, a password, an
# API key, an authorization header. Not a count or a tool that has "token" inside a word: `max_tokens`,
# `num_tokens`, `tokenizer` are settings a reader needs to reproduce a run.
SECRET_KEY = re.compile(
    r"(?:^|[_\W])(?:token|secret|secrets|password|passwd|credentials?|authorization)(?:$|[_\W])|api[_-]?key",
    re.I,
)


def redact(config: Any) -> Any:
    """A copy of a config with credential-like keys replaced, at any depth."""
    if isinstance(config, Mapping):
        return {k: "<redacted>" if SECRET_KEY.search(str(k)) else redact(v) for k, v in config.items()}
    if isinstance(config, list | tuple):
        return [redact(v) for v in config]
    return config


# Where a run happens to write or read on this machine: never part of what is published.
LOCAL_KEYS = frozenset({"output_dir", "logging_dir", "run_name", "hub", "benchmarks_dir", "cache_dir"})


def publishable(config: Any) -> Any:
    """A config for cards and published files: machine-local keys dropped, absolute paths and inference
    server addresses (`base_url`: where this run was served, often an internal host) masked, at any depth.
    Two runs of the same inputs from different folders or servers then publish the same bytes."""
    if isinstance(config, dict):
        return {
            k: "<server>" if k == "base_url" else publishable(v)
            for k, v in config.items()
            if k not in LOCAL_KEYS
        }
    if isinstance(config, list | tuple):
        return [publishable(v) for v in config]
    if isinstance(config, str) and config.startswith(("/", "~")):
        return "<local path>"
    return config


def published_config(cfg: Any) -> dict[str, Any]:
    """A stage config as it is published: `config_dict`, then `redact`, then `publishable`."""
    return publishable(redact(config_dict(cfg)))
