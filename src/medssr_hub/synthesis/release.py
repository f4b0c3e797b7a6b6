"""Synthesis's release: the accepted questions as the dataset (in slot order), the rejections, the
statistics, and the card and publish."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from medssr_hub.generation import stage_model_id
from medssr_hub.hub import StageRelease
from medssr_hub.hub.cards import dataset_card
from medssr_hub.published import published_config
from medssr_hub.records import MCQRecord, record_from_row
from medssr_hub.schema import SYNTHETIC_FEATURES
from medssr_hub.summary import StageSummary
from medssr_hub.synthesis.config import BRANCHES
from medssr_hub.synthesis.rare_ratio import RareDiseaseMatcher, rare_ratio
from medssr_hub.utils import atomic_write_json, atomic_write_jsonl, atomic_write_parquet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SynthesisSummary(StageSummary):
    """A synthesis run: how many questions it accepted, their rare-disease ratio, the acceptance and the
    rejections by reason."""

    @property
    def num_questions(self) -> int:
        return self.stats["num_questions"]

    @property
    def rare_ratio(self) -> float:
        return self.stats["rare_ratio"]

    @property
    def acceptance(self) -> dict[str, float | None]:
        return self.stats["acceptance"]

    @property
    def rejections(self) -> dict[str, int]:
        return self.stats["rejections"]


def record_of(row: dict[str, Any]) -> MCQRecord:
    return record_from_row(row["record"])


def write_release(synth, rhos, slots, accepted, rejected, attempts) -> dict[str, Any]:
    """The accepted rows in slot order as the dataset, the rejections beside it, `stats.json`; then the
    publish when the config names a repo. `synth` is the run's `Synthesizer`. Returns the stats."""
    rows = []
    for branch in BRANCHES:
        for slot, row in zip(slots[branch], accepted[branch], strict=True):
            rows.append((slot, row))
    rows.sort(key=lambda item: item[0])
    table = []
    for slot, row in rows:
        record = row["record"]
        table.append(
            {
                **record,
                "rare": row["branch"] == "rare",
                "rho": float(rhos[slot]),
                "disease_id": row["disease_id"],
                "passage_ids": row["passage_ids"],
                "seed_ids": row["seed_ids"],
                "generator": row["generator"],
                "key": record["answer"] if row["generator"] == "vignette" else None,
            }
        )
    atomic_write_parquet(synth.release / "data" / "train-00000.parquet", table, SYNTHETIC_FEATURES)
    atomic_write_jsonl(synth.release / "rejected.jsonl", rejected)
    records = [record_of({"record": r}) for r in table]
    content = rare_ratio(records, RareDiseaseMatcher(synth.catalog)) if records else None
    stats = {
        "num_questions": len(table),
        "alpha": synth.cfg.alpha,
        "rare_ratio": sum(r["rare"] for r in table) / max(1, len(table)),
        "rare_ratio_by_names": content.ratio if content else 0.0,
        "attempts": dict(attempts),
        "acceptance": {b: len(slots[b]) / attempts[b] if attempts[b] else None for b in BRANCHES},
        "rejections": dict(Counter(r["status"] for r in rejected).most_common()),
        "rejections_by_branch": {
            b: dict(Counter(r["status"] for r in rejected if r["branch"] == b).most_common())
            for b in BRANCHES
        },
        "catalog": synth.catalog.version if synth.catalog_used else None,
        "vignette_rewrites": dict(
            Counter(json.loads(r["metadata"]).get("rewrite") for r in table if r["generator"] == "vignette")
        )
        if synth.cfg.rewrite_vignettes
        else None,
    }
    atomic_write_json(synth.release / "stats.json", stats)
    logger.info(
        "Synthesized %d questions (rare %.1f%%, alpha %.2f); rejections %s",
        len(table),
        100 * stats["rare_ratio"],
        synth.cfg.alpha,
        stats["rejections"],
    )
    if synth.cfg.publish_repo:
        stats["published"] = publish_release(synth, stats)
    return stats


def publish_release(synth, stats: dict[str, Any]) -> str:
    cfg = synth.cfg
    card = dataset_card(
        repo_id=cfg.publish_repo,
        version=cfg.publish_version,
        pretty_name="MedSSR knowledge-enhanced synthetic questions",
        summary=(
            f"{stats['num_questions']} synthetic multiple-choice medical questions; a share alpha={cfg.alpha} "
            "of them is grounded in rare-disease knowledge (column `rare`)."
        ),
        stage="synthesis",
        num_rows=stats["num_questions"],
        data_files={"train": "data/train-*.parquet"},
        provenance={
            "generator": stage_model_id(cfg.backend, cfg.model, cfg.endpoint),
            "rare branch": cfg.rare_generator,
            "seed branch": cfg.seed_generator,
            "seed": cfg.seed,
            "alpha": cfg.alpha,
            "catalogue": stats["catalog"],
            "corpus": "disease cards" + "".join(f" + {d}" for d in cfg.documents),
            "seed questions": cfg.seed_data or "benchmarks/medqa.json",
        },
        counts={
            **{f"attempts ({b})": n for b, n in stats["attempts"].items()},
            "accepted": stats["num_questions"],
        },
        rejections=stats["rejections"],
        rare_ratio=stats["rare_ratio"],
        config=published_config(cfg),
        tags=["synthetic", "rare-diseases"],
    )
    result = StageRelease.of(cfg).publish(synth.release, card)
    return result.described


def quota_message(branch, quota, accepted, attempts, rejected) -> str:
    """Why a branch ran out of attempts: its fill, every branch's acceptance, its rejection reasons."""
    reasons = Counter(r["status"] for r in rejected if r["branch"] == branch)
    rates = {b: f"{len(accepted[b])}/{attempts[b]}" for b in BRANCHES if attempts[b]}
    return (
        f"the {branch} branch filled {len(accepted[branch])} of its {quota} questions within its attempt budget; "
        f"acceptance (accepted/attempts): {rates}; {branch} rejections: {dict(reasons.most_common())}. "
        "Use a stronger generator, raise max_attempts_per_question, or lower num_questions."
    )
