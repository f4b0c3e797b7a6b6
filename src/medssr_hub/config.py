"""One config system for every stage: dataclasses parsed by TRL's `TrlParser` (YAML + command line).

`medssr-hub STAGE --config X.yaml --field value` and `python recipes/STAGE.py --config X.yaml` read the
same dataclasses: an unknown key is an error naming it, and any field can be overridden on the command
line. Python callers (the demo) build the same objects with `config_from_dict`, never through argv.
A dict field given on the command line (JSON or YAML flow syntax) updates the YAML's dict.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from trl import TrlParser

from medssr_hub.config_limits import bounded, load_yaml_text
from medssr_hub.errors import ConfigError, InputError
from medssr_hub.names import check_repo, check_version
from medssr_hub.paths import recipe_path


class JsonDict(dict):
    """A dict-valued config field: from YAML as a mapping, on the command line as `'{"key": value}'`."""

    def __init__(self, value: Any = None, **kwargs):
        if isinstance(value, str):
            try:  # JSON first: YAML 1.1 reads a number such as 1e-05 as a string
                value = bounded(json.loads(value), "a mapping on the command line")
            except RecursionError as e:
                raise ConfigError("a mapping on the command line: nested too deep to read") from e
            except json.JSONDecodeError:
                try:
                    value = load_yaml_text(value, "a mapping on the command line")
                except yaml.YAMLError as e:
                    raise InputError(f"not a mapping: {value[:200]!r}") from e
            if not isinstance(value, dict):
                raise InputError(f"not a mapping: {value!r}")
        super().__init__(value or {}, **kwargs)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each field once, as its YAML key is spelled (`--dataset-name` is accepted too), with VALUE (or
    [BOOL], for a flag that may be given bare) for what it takes; a field's choices are in its help or its
    library's documentation."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=36)

    def _format_action_invocation(self, action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        flag = action.option_strings[0]
        if action.nargs == 0:
            return flag
        return f"{flag} {'[BOOL]' if action.nargs == '?' else 'VALUE'}"


class ConfigParser(TrlParser):
    """TrlParser whose errors are exceptions (one line at the CLI), not usage dumps and exit(), and whose
    help reads by group: one per dataclass, ours first; a library's fields by the first sentence of their
    own help (its documentation has the rest)."""

    def __init__(self, dataclass_types, **kwargs):
        kwargs.setdefault("usage", "%(prog)s [--config FILE.yaml] [--FIELD VALUE ...]")
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(dataclass_types, **kwargs)
        self._group_by_dataclass(list(dataclass_types))

    def _group_by_dataclass(self, types: list[type]) -> None:
        owner: dict[str, type] = {}
        for t in types:
            for f in dataclasses.fields(t):
                owner.setdefault(f.name, t)
        ours = [t for t in types if t.__module__.startswith("medssr_hub")]
        groups = {}
        for t in [*ours, *(t for t in types if t not in ours)]:
            library = t.__module__.split(".")[0]
            groups[t] = self.add_argument_group(
                f"{t.__name__} ({'medssr-hub' if t in ours else library})",
                None
                if t in ours
                else f"{library}'s fields: the first sentence of each (its documentation has the rest)",
            )
        # argparse keeps a group's actions in `_group_actions`; moving one changes only where help lists it.
        for action in list(self._optionals._group_actions):
            t = owner.get(action.dest)
            if t is None:
                continue
            self._optionals._group_actions.remove(action)
            groups[t]._group_actions.append(action)
            if t not in ours and action.help:
                action.help = first_sentence(action.help)

    def error(self, message: str):
        raise ConfigError(message)


def first_sentence(text: str, limit: int = 200) -> str:
    sentence = " ".join(text.split()).split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= limit else sentence[: limit - 3].rstrip() + "..."


def find_config(path: str | Path) -> Path:
    try:
        found = recipe_path(path)
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such config file") from e
    if not found.is_file():
        raise ConfigError(f"{path}: not a config file (a folder?); pass a YAML file")
    return found


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = find_config(path)
    try:
        data = load_yaml_text(Path(path).read_text(), str(path))
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such config file") from e
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(e, 'problem', None) or e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a YAML mapping of field: value")
    return data


def _dict_fields(types: Sequence[type]) -> set[str]:
    return {
        f.name
        for t in types
        for f in dataclasses.fields(t)
        if f.default_factory is JsonDict or "JsonDict" in str(f.type)
    }


def _optional_fields(types: Sequence[type]) -> set[str]:
    """Fields that may be null, on the command line as in YAML: those defaulting to None (the argument
    parser strips `| None` from the types it reads). A field such as TRL's `report_to`, typed `None | str`
    but defaulting to the string "none", keeps "none" as its string. Null on a demo step skips it."""
    return {f.name for t in types for f in dataclasses.fields(t) if f.default is None}


NULLS = ("null", "none", "~")


def parse_config(
    types: Sequence[type],
    argv: Sequence[str] | None = None,
    prog: str | None = None,
    defaults: dict[str, Any] | None = None,
) -> tuple:
    """The dataclasses `types` from `--config FILE` plus command-line overrides; `defaults` replace their
    fields' own defaults (a composed run's, see `load_config`), and the YAML and command line override them."""
    argv = list(argv or [])
    parser = ConfigParser(list(types), prog=prog)
    parser.set_defaults(**(defaults or {}))  # TrlParser sets the YAML's values over these
    config_file = None
    if "--config" in argv[:-1]:  # a shipped recipe (`recipes/...`) is found from an installed wheel too
        at = argv.index("--config") + 1
        argv[at] = config_file = str(find_config(argv[at]))
    from_yaml = read_yaml(config_file) if config_file else {}
    check_keys(types, from_yaml, config_file)
    # `null` on the command line means null, as in YAML, for every field that may be null (argparse would
    # read the string "null"); a dict field on the command line updates the YAML's dict, before the
    # dataclass checks it.
    nulls, dicts, nullable = set(), _dict_fields(types), _optional_fields(types)
    for name in {f.name for t in types for f in dataclasses.fields(t)}:
        for flag in (f"--{name}", f"--{name.replace('_', '-')}"):
            if flag in argv[:-1] and argv[argv.index(flag) + 1].strip().lower() in NULLS:
                if name in dicts and name not in nullable:
                    raise ConfigError(
                        f"{flag}: a mapping is required here, not null (an empty one is '{{}}')"
                    )
                if name not in nullable and name not in dicts:
                    continue  # a field that cannot be null: its parser says what it takes
                at = argv.index(flag)
                del argv[at : at + 2]
                nulls.add(name)
            elif name in dicts and flag in argv[:-1] and isinstance(from_yaml.get(name), dict):
                at = argv.index(flag) + 1
                try:
                    given = JsonDict(argv[at])
                except ValueError as e:
                    raise ConfigError(f"{flag}: {e}") from e
                argv[at] = json.dumps({**from_yaml[name], **given})
    try:
        parsed = parser.parse_args_and_config(argv)
        # Rebuilt with the nulls, so that the dataclass's own checks see them.
        parsed = [
            dataclasses.replace(c, **{f.name: None for f in dataclasses.fields(c) if f.name in nulls})
            if nulls & {f.name for f in dataclasses.fields(c)}
            else c
            for c in parsed
        ]
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e).splitlines()[0]) from e
    return check_configs(tuple(parsed), config_file)


# Bounds every stage config is held to when it is read, before any model loads or work starts.
MAX_INT = 2**31 - 1  # counts and sizes beyond this overflow torch and numpy
MAX_TOKENS = 1 << 20  # a generation or prompt budget (any field named max_*tokens* or *_length)


def check_configs(parsed: tuple, where: str | Path | None = None) -> tuple:
    """The checks every stage's config gets when it is read (CLI, YAML and Python callers alike): finite
    numbers, bounded counts and token budgets, endpoint URLs that are URLs, and publish names."""
    for config in parsed:
        _check_numbers(config, where)
        _check_endpoint(config, where)
        _split_reporters(config)
    return check_publish_settings(parsed, where)


def _split_reporters(config: Any) -> None:
    """`--report_to tensorboard,trackio`: the command line gives TrainingArguments one string, which it
    would take as one reporter's name; a YAML list needs nothing."""
    report_to = getattr(config, "report_to", None)
    if isinstance(report_to, list) and any("," in r for r in report_to):
        config.report_to = [name.strip() for r in report_to for name in r.split(",") if name.strip()]


def _check_numbers(config: Any, where: str | Path | None) -> None:
    for f in dataclasses.fields(config):
        value = getattr(config, f.name, None)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where or 'config'}: {f.name} must be a finite number, got {value}")
        if f.name == "top_k" and isinstance(value, int) and value < 0:
            raise ConfigError(f"{where or 'config'}: top_k must be 0 (off) or a count of tokens, got {value}")
        if isinstance(value, int):
            limit = MAX_TOKENS if "tokens" in f.name or f.name.endswith("_length") else MAX_INT
            if abs(value) > limit:
                raise ConfigError(f"{where or 'config'}: {f.name} must be at most {limit:,}, got {value:,}")


def _check_endpoint(config: Any, where: str | Path | None) -> None:
    endpoint = getattr(config, "endpoint", None)
    urls = (endpoint or {}).get("base_url") if isinstance(endpoint, dict) else None
    for url in [urls] if isinstance(urls, str) else urls or []:
        parts = urlsplit(str(url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{where or 'config'}: endpoint.base_url must be an http(s) URL such as "
                f"http://127.0.0.1:8000, got {url!r}"
            )


# transformers' and TRL's own Hub fields push an unversioned repo, with no card of ours and no manifest, to
# huggingface.co whatever `hub` says. A run publishes through ours instead; set, they are refused.
TRL_HUB_FIELDS = (
    "push_to_hub",
    "hub_model_id",
    "hub_revision",
    "hub_token",
    "hub_private_repo",
    "hub_always_push",
    "log_completions_hub_repo",
)
OUR_PUBLISH_FIELDS = "publish_repo, publish_version, hub and push_checkpoints"


def check_publish_settings(parsed: tuple, where: str | Path | None = None) -> tuple:
    """Every stage's `publish_repo` / `publish_version` through the hub's one name check, when the config
    is read: a bad name stops the run before any work, not after it. TRL's own Hub fields, set, are refused
    in one line naming ours (the training configs; the demo's and the ablation's stages alike)."""
    for config in parsed:
        given = [name for name in TRL_HUB_FIELDS if getattr(config, name, None) not in (None, False)]
        if given:
            raise ConfigError(
                f"{where or 'config'}: {', '.join(given)}: TRL's Hub upload is not used here; a run publishes "
                f"a versioned repo with its card through {OUR_PUBLISH_FIELDS} (local hub by default, --hub hf "
                "for the Hub)"
            )
        repo = getattr(config, "publish_repo", None)
        version = getattr(config, "publish_version", None)
        try:
            if repo is not None:
                check_repo(repo, "dataset")
            if version is not None or repo is not None:
                check_version(version, "main")
        except ValueError as e:
            raise ConfigError(f"{where or 'config'}: publish_repo/publish_version: {e}") from e
    return parsed


def check_keys(types: Sequence[type], values: dict[str, Any], where: str | Path | None) -> None:
    """An unknown key is an error that names it (before TrlParser, whose message is about argv)."""
    known = {f.name for t in types for f in dataclasses.fields(t)}
    unknown = sorted(set(values) - known - {"env"})  # `env:` sets environment variables (TrlParser)
    if unknown:
        raise ConfigError(
            f"{where or 'config'}: unknown config key(s) {', '.join(unknown)} (--help lists the fields)"
        )


def config_from_dict(
    types: Sequence[type],
    values: dict[str, Any],
    yaml_file: str | Path | None = None,
    defaults: dict[str, Any] | None = None,
) -> tuple:
    """The same dataclasses from a dict (over a YAML file's values, over `defaults`): for Python callers
    such as the demo."""
    data = {**(defaults or {}), **(read_yaml(yaml_file) if yaml_file else {}), **values}
    check_keys(types, data, yaml_file)
    data = _numbers(types, data, yaml_file)
    try:
        parsed = tuple(ConfigParser(list(types)).parse_dict(data))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{yaml_file or 'config'}: {str(e).splitlines()[0]}") from e
    return check_configs(parsed, yaml_file)


def _numbers(types: Sequence[type], data: dict[str, Any], where: str | Path | None) -> dict[str, Any]:
    """Numbers written as strings (YAML 1.1 reads `5e-6` as one) converted for int and float fields, as the
    command line's argparse does; a string that is no number is an error naming the field."""
    kinds: dict[str, type] = {}
    for t in types:
        try:
            hints = typing.get_type_hints(t)
        except Exception:  # a field annotation this Python cannot resolve: leave the values as they are
            continue
        for name, hint in hints.items():
            options = set(typing.get_args(hint)) - {type(None)} or {hint}
            if options <= {int, float} and options:
                kinds[name] = float if float in options else int
    out = dict(data)
    for name, kind in kinds.items():
        if isinstance(out.get(name), str):
            try:
                out[name] = kind(out[name])
            except ValueError as e:
                raise ConfigError(f"{where or 'config'}: {name}: not a number: {out[name]!r}") from e
    return out


def config_parts(kind: type) -> tuple[type, ...]:
    """The dataclasses a subcommand's config is read as: one, or a composed run's `PARTS` (parsed together,
    each field once, as TRL's scripts read their three)."""
    return tuple(getattr(kind, "PARTS", (kind,)))


def load_config(kind: type, argv: Sequence[str] | None = None, prog: str | None = None) -> Any:
    """A subcommand's config from `--config FILE` plus command-line overrides: a dataclass, or a run composed
    of several (`PARTS`, built as `kind(*parts)`), whose `DEFAULTS` replace its parts' own defaults."""
    parts = config_parts(kind)
    parsed = parse_config(parts, argv, prog=prog, defaults=getattr(kind, "DEFAULTS", None))
    return kind(*parsed) if parts != (kind,) else parsed[0]
