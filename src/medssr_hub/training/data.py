"""Questions -> TRL datasets: prompts in the paper's format plus the columns the rewards read."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field

from datasets import Dataset

from medssr_hub.answers import answer_prompt
from medssr_hub.columns import ColumnMap
from medssr_hub.decontamination import Decontaminator
from medssr_hub.errors import InputError
from medssr_hub.paths import benchmarks_dir
from medssr_hub.records import MCQRecord, load_records
from medssr_hub.training.args import MedSSRScriptArguments

logger = logging.getLogger(__name__)


class TrainingDataError(InputError):
    pass


# Released training sets in another layout, by repo id: how their columns become questions.
DATASET_COLUMNS = {
    # MedSSR's released stage 1 data (Apache-2.0). MedSSR trained with verl, so this assumes verl's RL
    # data layout (verl docs, "Prepare Data"): `prompt` as chat messages whose user message holds the
    # question with its "A. ..." option lines, `reward_model.ground_truth` as the pseudo-label letter,
    # `extra_info.index` as the id. Its files could not be read from here: unverified, see docs/limitations.md.
    "tdlhl/MedSSR-Synthetic-43K": ColumnMap(
        question="prompt", options=None, answer=None, label="reward_model.ground_truth", id="extra_info.index"
    ),
}


def column_map(args: MedSSRScriptArguments) -> ColumnMap | None:
    """`dataset_columns` when set, else the known mapping of a released set, else None (our schemas)."""
    if args.dataset_columns:
        try:
            return ColumnMap.from_dict(dict(args.dataset_columns))
        except (TypeError, ValueError) as e:
            raise TrainingDataError(f"dataset_columns: {e}") from e
    return DATASET_COLUMNS.get(args.dataset_name)


@dataclass
class DataInfo:
    """Where the training questions came from and what was left out, for the model card."""

    source: str
    revision: str | None
    rows: int = 0
    skipped: Counter = field(default_factory=Counter)
    with_key: int = 0
    label_key_agreement: float | None = None
    eval_overlap: int = 0  # questions sharing 13-grams with the evaluation sets (allow_eval_overlap)

    def card_fields(self) -> dict[str, object]:
        out = {"training questions": self.rows}
        if self.skipped:
            out["skipped questions"] = ", ".join(f"{k}: {v}" for k, v in self.skipped.most_common())
        if self.eval_overlap:
            out["questions overlapping evaluation sets (13-grams)"] = self.eval_overlap
        if self.label_key_agreement is not None:
            out["pseudo-label = key (questions with a key)"] = (
                f"{self.label_key_agreement:.1%} of {self.with_key}"
            )
        return out


def load_questions(args: MedSSRScriptArguments) -> tuple[list[MCQRecord], DataInfo]:
    records, report = load_records(
        args.dataset_name,
        revision=args.dataset_revision,
        split=args.dataset_train_split,
        hub=args.hub,
        columns=column_map(args),
        subset=args.dataset_config,
    )
    info = DataInfo(source=args.dataset_name, revision=args.dataset_revision)
    info.skipped.update({f"load: {k}": v for k, v in report.rejected.items()})
    if args.max_train_samples:
        records = records[: args.max_train_samples]
    info.eval_overlap = check_eval_overlap(records, args)
    return records, info


def check_eval_overlap(records: list[MCQRecord], args: MedSSRScriptArguments) -> int:
    """How many training questions share a 13-gram with the evaluation sets; refused unless allowed."""
    sources = args.decontaminate
    if sources is None:
        folder = benchmarks_dir()
        sources = [str(p) for p in sorted(folder.glob("*.json"))] if folder else []
    if not sources:
        return 0
    guard = Decontaminator(r for s in sources for r in load_records(s, hub=args.hub)[0])
    overlapping = [r.id for r in records if guard.check(r)]
    if overlapping and not args.allow_eval_overlap:
        raise TrainingDataError(
            f"{args.dataset_name}: {len(overlapping)} of {len(records)} training questions share 13-grams with "
            f"the evaluation sets ({len(sources)} files; first: {', '.join(overlapping[:3])}). Train on data "
            "that is not an evaluation benchmark, or set allow_eval_overlap: true to train on it anyway"
        )
    if overlapping:
        logger.warning(
            "%d training questions overlap the evaluation sets (allow_eval_overlap)", len(overlapping)
        )
    return len(overlapping)


def target_of(record: MCQRecord, target: str) -> str | None:
    """The letter rewarded: the gold `answer` (stage 2), the pseudo-label column `label` (stage 1), or the
    construction `key` (the oracle). `vote` has none in the data: the group's majority is its label, online
    ('' here)."""
    if target == "vote":
        return ""
    letter = {"answer": record.answer, "key": record.key}.get(target, record.columns.get("label"))
    return letter if letter in record.options else None


def grpo_dataset(args: MedSSRScriptArguments) -> tuple[Dataset, DataInfo]:
    """Columns: prompt (chat messages or raw text), target, letters, key ('' when none), record (JSON).

    `key` is the construction key of a synthetic question (never the reward, only the noise diagnostic);
    `record` lets the recovery pass rebuild the question.
    """
    records, info = load_questions(args)
    rows = []
    for record in records:
        target = target_of(record, args.target)
        if target is None:
            info.skipped[f"no {args.target}"] += 1
            continue
        key = record.key if args.target in ("label", "vote") else None
        rows.append(
            {
                "prompt": answer_prompt(record, chat=args.chat),
                "target": target,
                "letters": record.letters,
                "key": key or "",
                "id": record.id,
                "record": json.dumps(record.to_row(), ensure_ascii=False),
            }
        )
    keyed = [r for r in rows if r["key"]]
    info.rows, info.with_key = len(rows), len(keyed)
    if keyed and args.target == "label":
        info.label_key_agreement = sum(r["key"] == r["target"] for r in keyed) / len(keyed)
    _check(rows, info, args)
    return Dataset.from_list(rows), info


def sft_dataset(args: MedSSRScriptArguments) -> tuple[Dataset, DataInfo]:
    """prompt/completion pairs: the answer prompt, then the reasoning ending in "The answer is X."."""
    records, info = load_questions(args)
    rows = []
    for record in records:
        reasoning = str(record.metadata.get(args.reasoning_column) or "").strip()
        if not reasoning:
            info.skipped[f"no {args.reasoning_column}"] += 1
            continue
        if record.answer is None:
            info.skipped["no answer"] += 1
            continue
        text = f"{reasoning}\nThe answer is {record.answer}."
        prompt = answer_prompt(record, chat=args.chat)
        completion = [{"role": "assistant", "content": text}] if args.chat else text
        rows.append({"prompt": prompt, "completion": completion, "id": record.id})
    info.rows = len(rows)
    _check(rows, info, args)
    return Dataset.from_list(rows), info


def _check(rows: list, info: DataInfo, args: MedSSRScriptArguments) -> None:
    if info.skipped:
        logger.warning("Left out of training: %s", dict(info.skipped))
    if not rows:
        raise TrainingDataError(
            f"{args.dataset_name}@{args.dataset_revision or 'latest'} has no usable training question "
            f"(left out: {dict(info.skipped)}); stage 1 needs a pseudo-labeled split (column `label`), "
            "stage 2 and SFT need `answer`/`gold`; name the split with dataset_train_split"
        )
    logger.info("Training on %d questions from %s", len(rows), args.dataset_name)
