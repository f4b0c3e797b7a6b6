"""The contract between stages: one `datasets.Features` per stage output, and the split naming rule.

Every stage writes its rows with its schema and reads its input by the schema of the stage before it,
so nothing a later stage needs travels inside a JSON string. `metadata` (a JSON object) is only for what
no stage relies on. Ground layer: imports nothing of ours.

| stage | schema |
|---|---|
| any MCQ source | `MCQ_FEATURES` |
| synthesis | `SYNTHETIC_FEATURES` = MCQ + rare, rho, disease_id, passage_ids, seed_ids, generator, key |
| labeling | `LABELED_FEATURES` = synthetic + label, agreement, votes, recovered, tie |
| evaluation | `DETAILS_FEATURES` (one row per item and sample), `RESULTS_FEATURES` (one per model x benchmark) |
"""

from __future__ import annotations

import re
from pathlib import Path

from datasets import Features, List, Value

from medssr_hub.errors import MedSSRError

MCQ_FEATURES = Features(
    {
        "id": Value("string"),
        "question": Value("string"),  # the stem, without option lines
        "options": List({"letter": Value("string"), "text": Value("string")}),
        "answer": Value(
            "string"
        ),  # the letter the source gives (gold, or the generator's claim); may be null
        "source": Value("string"),
        "metadata": Value("string"),  # JSON object: free per-row metadata that no stage relies on
    }
)
SYNTHETIC_COLUMNS = Features(
    {
        "rare": Value("bool"),  # drawn rho < alpha: grounded in rare-disease knowledge
        "rho": Value("float64"),
        "disease_id": Value("string"),  # ORPHA:... or null
        "passage_ids": List(Value("string")),  # knowledge passages injected into the prompt
        "seed_ids": List(Value("string")),  # exemplar questions the generator was shown
        "generator": Value("string"),  # vignette | llm:<model or endpoint>
        "key": Value("string"),  # the answer known by construction (vignettes), else null
    }
)
LABEL_COLUMNS = Features(
    {
        "label": Value("string"),  # majority vote of the policy: the stage 1 target
        "agreement": Value("float64"),  # share of the n votes that agree with the label
        "votes": List(Value("string")),  # each vote's letter, null when unparseable
        "recovered": List(Value("bool")),  # the vote came from the constrained second pass
        "tie": Value("bool"),
    }
)
SYNTHETIC_FEATURES = Features({**MCQ_FEATURES, **SYNTHETIC_COLUMNS})
LABELED_FEATURES = Features({**SYNTHETIC_FEATURES, **LABEL_COLUMNS})
# Columns a later stage reads: a loader keeps them as typed columns (`MCQRecord.columns`).
STAGE_COLUMNS = tuple(name for name in LABELED_FEATURES if name not in MCQ_FEATURES)

DETAILS_FEATURES = Features(
    {
        "benchmark": Value("string"),
        "id": Value("string"),
        "sample": Value("int64"),
        "gold": Value("string"),
        "generation": Value("string"),
        "pred": Value("string"),
        "recovered": Value("bool"),
        "correct": Value("bool"),
        # The item's maj@k and unbiased pass@k at k = sample + 1: averaged over the items for one sample
        # index, they are the benchmark's maj@k and pass@k.
        "maj_at_k": Value("bool"),
        "pass_at_k": Value("float64"),
        # `correct` under each rule (each with its own recovery pass); null in loglikelihood mode
        "official_correct": Value("bool"),
        "lenient_correct": Value("bool"),
    }
)
# Published leaderboards carry `model` on every details row, to join several models' details in one split.
LEADERBOARD_DETAILS_FEATURES = Features({"model": Value("string"), **DETAILS_FEATURES})
RESULTS_FEATURES = Features(
    {
        "model": Value("string"),
        "benchmark": Value("string"),
        "title": Value("string"),
        "rare": Value("bool"),
        "source": Value("string"),
        "extraction": Value("string"),  # official | lenient | loglikelihood: how answers were read
        "protocol": Value(
            "string"
        ),  # the same in words, with the recovery rule (`answers.Extraction.protocol`)
        "items": Value("int64"),
        "samples": Value("int64"),
        "mean": Value("float64"),
        "std": Value("float64"),
        "parse_rate": Value("float64"),
        "recovery_rate": Value("float64"),
        "chance": Value("float64"),  # what guessing scores: mean over items of 1 / options offered
        # Both rules on the same generations (the configured one is `mean` / `std`).
        "official_mean": Value("float64"),
        "official_std": Value("float64"),
        "lenient_mean": Value("float64"),
        "lenient_std": Value("float64"),
        # The official recovery pass: family | script_path_string, the family it chose, its biased ids
        # and its token count.
        "recovery_rule": Value("string"),
        "recovery_family": Value("string"),
        "recovery_ids": List(Value("int64")),
        "recovery_tokens": Value("int64"),
        # Over an item's n samples (n = `samples`): its majority answer is gold (maj@n), and the unbiased
        # pass@n (at least one sample correct). Null where a run did not report them.
        "maj_at_n": Value("float64"),
        "pass_at_n": Value("float64"),
        # The same for k = 1..samples (element k - 1).
        "maj_at_k": List(Value("float64")),
        "pass_at_k": List(Value("float64")),
    }
)

# A leaderboard's ranking: one row per model, in the order leaderboard.md shows them, its averages from
# `evaluation.tables.table_rows` (the one function every view takes them from: md, csv, json, png, Space).
RANKING_FEATURES = Features(
    {
        "rank": Value("int64"),
        "model": Value("string"),
        "average": Value("float64"),  # over the non-rare benchmarks
        "rare_disease": Value("float64"),
        "average_official": Value("float64"),
        "average_lenient": Value("float64"),
        "recovery_rate": Value("float64"),
        "maj_at_n": Value("float64"),
        "pass_at_n": Value("float64"),
        "benchmarks": Value("int64"),
        "from": Value("string"),
    }
)

SHARD_NAME = re.compile(r"(\w+?)-\d{5}(?:-of-\d{5})?")
NAMED_SPLITS = (
    "train",
    "test",
    "validation",
    "dev",
    "discarded",
    "rejected",
    "results",
    "details",
    "ranking",
)
DEFAULT_SPLITS = ("test", "train")  # read when no split is asked for, in this order


class SplitNotFoundError(MedSSRError, KeyError):
    """A split was asked for that the folder or repo does not have; the message names the ones it has."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0])


def split_of(path: Path) -> str:
    """The split a data file holds, by the Hub's file naming: `data/<split>-00000[-of-00001].parquet` (what
    every stage writes), or a file named after its split (`test.jsonl`). Any other file is `train`."""
    if match := SHARD_NAME.fullmatch(path.stem):
        return match.group(1)
    return path.stem if path.stem in NAMED_SPLITS else "train"


def pick_split(splits: dict[str, list], split: str | None, where: str) -> str:
    """The split to read: the one asked for (an error naming the others if absent), else `test`, else
    `train`, else the only one. A folder or repo with several other splits needs an explicit one."""
    available = sorted(s for s in splits if s != "rejected")
    if split is not None:
        if split not in splits:
            raise SplitNotFoundError(f"{where} has no split {split!r}; it has {available}")
        return split
    for name in DEFAULT_SPLITS:
        if name in splits:
            return name
    if len(available) == 1:
        return available[0]
    raise SplitNotFoundError(f"{where} has splits {available}: name the one to read")


def project(rows: list[dict], features: Features) -> list[dict]:
    """Rows reduced to exactly the schema's columns, in its order; a column a row lacks is null."""
    return [{name: row.get(name) for name in features} for row in rows]
