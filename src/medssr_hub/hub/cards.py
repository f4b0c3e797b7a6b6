"""Dataset and model cards from the templates in `dataset_cards/` and `model_cards/`.

Each stage passes what it knows (config, models, seeds, counts, rejections, rare ratio, evaluation table,
plots); the YAML metadata follows the Hub's card schema so that the Hub indexes the artefact properly.
Secrets never reach a card: config keys that look like credentials are redacted, and `card_problems`
refuses a card that contains something shaped like an HF token.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

from medssr_hub import __version__
from medssr_hub.hub.common import REPO_ID_RE
from medssr_hub.paths import package_data
from medssr_hub.published import SECRET_KEY, redact  # noqa: F401  redact: re-exported

CARDS_ENV = "MEDSSR_CARDS_DIR"
TOKEN_SHAPE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
]
BASE_TAGS = ["medical", "medssr", "medssr-hub"]


def templates_dir(kind: str) -> Path:
    """`dataset_cards/` or `model_cards/`: under $MEDSSR_CARDS_DIR if set, else shipped with the package."""
    folder = f"{kind}_cards"
    if os.environ.get(CARDS_ENV):
        override = Path(os.environ[CARDS_ENV]) / folder
        if not override.is_dir():
            raise FileNotFoundError(f"{CARDS_ENV}={os.environ[CARDS_ENV]} has no {folder}/ folder")
        return override
    return package_data(folder)


def size_category(num_rows: int) -> str:
    return next((name for limit, name in SIZE_CATEGORIES if num_rows < limit), "10M<n<100M")


def _config_yaml(config: Mapping[str, Any] | None) -> str | None:
    """A card's config block, keys sorted at every depth as in `medssr_config.json`: a card's bytes depend
    on the settings' values, never on the order a config class declares its fields (inherited ones first)."""
    if not config:
        return None
    return yaml.safe_dump(redact(dict(config)), sort_keys=True, allow_unicode=True)


def dataset_card(
    *,
    repo_id: str,
    version: str,
    pretty_name: str,
    summary: str,
    stage: str,
    num_rows: int,
    data_files: Mapping[str, str] | None = None,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    provenance: Mapping[str, Any] | None = None,
    counts: Mapping[str, Any] | None = None,
    rejections: Mapping[str, int] | None = None,
    rare_ratio: float | None = None,
    evaluation: str | None = None,
    plots: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
    tags: list[str] | tuple[str, ...] = (),
    license: str = "apache-2.0",
    source_datasets: list[str] | None = None,
) -> DatasetCard:
    data = DatasetCardData(
        license=license,
        language=["en"],
        pretty_name=pretty_name,
        tags=[*BASE_TAGS, *tags],
        task_categories=["question-answering", "multiple-choice"],
        size_categories=[size_category(num_rows)],
        source_datasets=source_datasets,
        configs=[
            {
                "config_name": name,
                "data_files": [{"split": split, "path": path} for split, path in files.items()],
            }
            for name, files in (configs or {"default": data_files}).items()
        ],
    )
    return _render(
        DatasetCard,
        data,
        "dataset",
        pretty_name=pretty_name,
        summary=summary,
        stage=stage,
        repo_id=repo_id,
        version=version,
        num_rows=num_rows,
        provenance=provenance,
        counts=dict(counts or {}),
        rejections=dict(rejections or {}),
        rare_ratio=rare_ratio,
        evaluation=evaluation,
        plots=plots,
        config=config,
    )


def model_card(
    *,
    repo_id: str,
    version: str,
    pretty_name: str,
    summary: str,
    stage: str,
    base_model: str,
    datasets: list[tuple[str, str]] = (),
    provenance: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    evaluation: str | None = None,
    plots: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
    tags: list[str] | tuple[str, ...] = (),
    license: str = "apache-2.0",
) -> ModelCard:
    data = ModelCardData(
        license=license,
        language=["en"],
        base_model=base_model,
        # metadata takes Hub ids only; local files still show in the provenance table
        datasets=[d for d, _ in datasets if REPO_ID_RE.fullmatch(d)] or None,
        tags=[*BASE_TAGS, *tags],
        library_name="transformers",
        pipeline_tag="text-generation",
    )
    return _render(
        ModelCard,
        data,
        "model",
        pretty_name=pretty_name,
        summary=summary,
        stage=stage,
        repo_id=repo_id,
        version=version,
        base_model=base_model,
        dataset_revisions=[{"id": d, "revision": r} for d, r in datasets],
        provenance=provenance,
        training=dict(training or {}),
        evaluation=evaluation,
        plots=plots,
        config=config,
    )


def md_cell(value: Any) -> str:
    """A value as one markdown table cell: HTML escaped (no raw tags reach a card), `|` escaped, line
    breaks joined, so a user's name or file name can neither break a table nor inject markup."""
    text = html.escape(str(value), quote=False).replace("|", "\\|")
    return " ".join(text.splitlines())  # joined, a "---" line can no longer become a rule or heading


TABLES = ("counts", "rejections", "training")  # fields the templates render as key | value rows


def _render(card_cls, data, kind: str, *, provenance, plots, config, **fields):
    """A card from the `kind` template: the fields every card shares (version, redacted provenance,
    plots, config as YAML) plus the kind's own. Every user-controlled string in a table, title or
    summary is escaped (`md_cell`); the config goes into a fenced YAML block."""
    for name in TABLES:
        if fields.get(name):
            fields[name] = {md_cell(k): md_cell(v) for k, v in fields[name].items()}
    for name in ("pretty_name", "summary"):
        if fields.get(name) is not None:
            fields[name] = md_cell(fields[name])
    return card_cls.from_template(
        data,
        template_path=str(templates_dir(kind) / f"{kind}_card.md"),
        medssr_version=__version__,
        provenance={md_cell(k): md_cell(v) for k, v in redact(dict(provenance or {})).items()},
        plots={md_cell(k): v for k, v in (plots or {}).items()},
        config=_config_yaml(config),
        **fields,
    )


def card_problems(card: DatasetCard | ModelCard, folder: str | Path | None = None) -> list[str]:
    """Offline checks before a publish: required metadata, data files that exist, no token-shaped text."""
    problems = []
    meta = card.data.to_dict()
    for key in ("license", "tags"):
        if not meta.get(key):
            problems.append(f"metadata lacks {key!r}")
    if isinstance(card, DatasetCard):
        for key in ("task_categories", "size_categories", "configs"):
            if not meta.get(key):
                problems.append(f"metadata lacks {key!r}")
        if folder is not None:
            for config in meta.get("configs") or []:
                for entry in config.get("data_files") or []:
                    if not list(Path(folder).glob(entry["path"])):
                        problems.append(f"data_files path {entry['path']!r} matches no file in {folder}")
    elif not meta.get("base_model"):
        problems.append("metadata lacks 'base_model'")
    if TOKEN_SHAPE.search(str(card)):
        problems.append("the card contains something shaped like an HF token")
    return problems
