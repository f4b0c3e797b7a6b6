"""An offline rare-disease evaluation subset: the benchmark items that name a catalogue rare disease.

RareDis-Sub (the paper's rare-disease benchmark, `tdlhl/RareDis-Sub` on the Hub) was built by selecting
rare-disease items from existing benchmarks. Offline, this module does the same with the ORPHANET
catalogue: an item is kept when its question or options name a catalogue disease, by name or synonym, as
whole words. Each kept item records its ORPHA id(s) and the matched text. The result is scored as its own
rare-disease row, "catalogue-matched", and is never called RareDis-Sub.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from medssr_hub.records import MCQRecord
from medssr_hub.synthesis.catalog import RareDiseaseCatalog
from medssr_hub.synthesis.rare_ratio import RareDiseaseMatcher
from medssr_hub.utils import atomic_write_json

SUBSET_NAME = "raredis_catalogue"  # the registry name of the subset (evaluation.registry)
SUBSET_FILE = f"{SUBSET_NAME}.json"


def select_rare_items(
    benchmarks: Iterable[tuple[str, list[MCQRecord]]], matcher: RareDiseaseMatcher
) -> list[dict[str, Any]]:
    """MedSSR-format rows (`id`, `question`, `gold`, `name`) of the items that name a catalogue disease,
    with `benchmark`, `orpha_ids` and `matched` (the text that matched, one per id)."""
    rows = []
    for benchmark, records in benchmarks:
        for record in records:
            hits = matcher.matches(record.prompt_text())
            if hits and record.answer:
                rows.append(
                    {
                        "id": record.id,
                        "question": record.prompt_text(),
                        "gold": record.answer,
                        "name": SUBSET_NAME,
                        "benchmark": benchmark,
                        "orpha_ids": [disease_id for disease_id, _ in hits],
                        "matched": [text for _, text in hits],
                    }
                )
    return rows


def build_subset(
    benchmarks: Iterable[tuple[str, list[MCQRecord]]], output: str | Path, catalog: RareDiseaseCatalog
) -> dict[str, Any]:
    """Write `output/raredis_catalogue.json` and `output/stats.json`; return the stats."""
    benchmarks = list(benchmarks)
    rows = select_rare_items(benchmarks, RareDiseaseMatcher(catalog))
    out = Path(output)
    atomic_write_json(out / SUBSET_FILE, rows)
    diseases = Counter(text for row in rows for text in row["matched"])
    stats = {
        "items": len(rows),
        "scanned": {name: len(records) for name, records in benchmarks},
        "selected": dict(Counter(row["benchmark"] for row in rows)),
        "catalogue diseases": len(catalog.by_id),
        "most matched": dict(diseases.most_common(10)),
        "rule": "a catalogue disease name or synonym in the question or options, whole words, case-insensitive",
    }
    atomic_write_json(out / "stats.json", stats)
    return stats
