"""Multiple-choice question records: one schema, loaders for every source, counted rejections.

A record is a question stem, lettered options, an optional answer letter, its source, the typed columns
that stages add (`medssr_hub.schema`: synthesis's `rare`, `key`, ..., labeling's `label`, `votes`, ...)
and free metadata. Sources: the MedSSR evaluation format (options embedded in `question` as "A. ..."
lines), JSON/JSONL/parquet files, folders a stage wrote, or Hub datasets.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, Features

from medssr_hub.columns import ColumnMap
from medssr_hub.errors import InputError
from medssr_hub.hub.common import MANIFEST, RUN_CONFIG
from medssr_hub.resolve import resolve_dataset
from medssr_hub.schema import MCQ_FEATURES, STAGE_COLUMNS, pick_split, project, split_of
from medssr_hub.utils import positive_env

logger = logging.getLogger(__name__)

OPTION_LINE = re.compile(r"^\s*([A-Z])[.)]\s+(.*\S)\s*$")
MIN_OPTIONS = 2
EXAMPLES_PER_REASON = 5
# The longest question (stem and options) a loader keeps; longer ones are counted rejections, never
# tokenized (a 50 MB line once asked the tokenizer for 30 GB). The longest in the paper's six shared test
# files is 4,860.
MAX_QUESTION_CHARS_ENV = "MEDSSR_MAX_QUESTION_CHARS"
DEFAULT_MAX_QUESTION_CHARS = 100_000


def max_question_chars() -> int:
    return positive_env(MAX_QUESTION_CHARS_ENV, DEFAULT_MAX_QUESTION_CHARS, int, "characters")


# metadata key of the question text exactly as a MedSSR-format file gave it (when it differs from format())
VERBATIM = "verbatim_question"


class RecordFormatError(InputError):
    """A file or dataset is not what it claims to be (bad JSON, not parquet, wrong top-level shape)."""


@dataclass
class MCQRecord:
    id: str
    question: str  # the stem only, without option lines
    options: dict[str, str]  # letter -> text, in letter order
    answer: str | None = None
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    # The typed columns stages add (schema.STAGE_COLUMNS: `rare`, `key`, `label`, ...), carried through.
    columns: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str | None:
        """The answer known by construction (synthetic vignettes), never a generator's claim or a vote."""
        return self.columns.get("key")

    @property
    def letters(self) -> list[str]:
        return list(self.options)

    def format(self) -> str:
        """Stem followed by "A. ..." lines: the MedSSR evaluation layout."""
        lines = [self.question.strip(), *(f"{k}. {v}" for k, v in self.options.items())]
        return "\n".join(lines)

    def prompt_text(self) -> str:
        """The question as answer prompts show it: verbatim where a MedSSR-format file wrote stem and option
        lines in one string (the official script sends that string as it is), else `format()`."""
        return self.metadata.get(VERBATIM) or self.format()

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "options": [{"letter": k, "text": v} for k, v in self.options.items()],
            "answer": self.answer,
            "source": self.source,
            "metadata": json.dumps(self.metadata, ensure_ascii=False, sort_keys=True),
            **self.columns,
        }


def split_options(text: str) -> tuple[str, list[tuple[str, str]]] | None:
    """Split "stem\nA. x\nB. y" into ("stem", [("A", "x"), ("B", "y")]).

    The option block is the trailing run of lines that starts at the last "A." line and continues with
    consecutive letters (a repeated letter is kept, so that the caller can reject it); other lines inside
    the block continue the previous option. Stems with their own lists (MMLU's "I. ... II. ...") stay
    intact. Returns None when there is no option block.
    """
    lines = text.splitlines()
    start = next((i for i in range(len(lines) - 1, -1, -1) if _option_letter(lines[i]) == "A"), None)
    if start is None:
        return None
    pairs: list[tuple[str, str]] = []
    for line in lines[start:]:
        m = OPTION_LINE.match(line)
        seen = {letter for letter, _ in pairs}
        if m and (not pairs or m.group(1) == chr(ord(pairs[-1][0]) + 1) or m.group(1) in seen):
            pairs.append((m.group(1), m.group(2).strip()))
        elif pairs and line.strip():
            pairs[-1] = (pairs[-1][0], f"{pairs[-1][1]} {line.strip()}")
    return "\n".join(lines[:start]).strip(), pairs


def _option_letter(line: str) -> str | None:
    m = OPTION_LINE.match(line)
    return m.group(1) if m else None


@dataclass
class LoadReport:
    """What a load kept and what it rejected, by reason, with the first offending ids."""

    source: str
    revision: str | None = None
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def reject(self, reason: str, row_id: str) -> None:
        self.rejected[reason] += 1
        self.examples.setdefault(reason, [])
        if len(self.examples[reason]) < EXAMPLES_PER_REASON:
            self.examples[reason].append(row_id)

    def summary(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        text = f"{self.source}{rev}: kept {self.kept}, rejected {sum(self.rejected.values())}"
        for reason, count in self.rejected.most_common():
            text += f"\n  {reason}: {count} (first: {', '.join(self.examples[reason])})"
        return text


def normalize_row(
    row: Any, index: int, source: str, report: LoadReport, limit: int | None = None
) -> MCQRecord | None:
    """Turn one raw row into a record, or count why not. Never raises for a bad row."""
    if not isinstance(row, dict):
        report.reject("not_an_object", f"#{index}")
        return None
    text = row.get("question")
    row_id = str(row["id"]) if row.get("id") not in (None, "") else None
    label = row_id or f"#{index}"
    if not isinstance(text, str):
        report.reject("missing_question", label)
        return None
    limit = limit or max_question_chars()  # loaders read it once per load
    if len(text) > limit:  # before any parsing of it
        report.reject("too_long", label)
        return None

    options = row.get("options")
    if options is None:
        split = split_options(text)
        if split is None:
            report.reject("no_options", label)
            return None
        stem, pairs = split
    else:
        stem = text.strip()
        if isinstance(options, dict):
            pairs = list(options.items())
        elif isinstance(options, list) and all(isinstance(o, dict) for o in options):
            pairs = [(o.get("letter", ""), o.get("text", "")) for o in options]
        elif isinstance(options, list):  # a plain list of option texts: letter them A, B, C...
            pairs = [(chr(ord("A") + i), v) for i, v in enumerate(options)]
        else:
            report.reject("bad_options", label)
            return None
    pairs = [(str(k).strip().upper(), str(v or "").strip()) for k, v in pairs]
    parsed = dict(pairs)
    if len(stem) + sum(len(v) for _, v in pairs) > limit:
        report.reject("too_long", label)
        return None

    if not stem:
        report.reject("empty_stem", label)
        return None
    if len(parsed) != len(pairs):
        report.reject("duplicate_letters", label)
        return None
    if len(parsed) < MIN_OPTIONS:
        report.reject("too_few_options", label)
        return None
    if any(not re.fullmatch(r"[A-Z]", k) for k in parsed):
        report.reject("bad_option_letter", label)
        return None
    if any(not v for v in parsed.values()):
        report.reject("empty_option", label)
        return None

    answer = row.get("answer", row.get("gold"))
    answer = str(answer).strip().upper() if answer not in (None, "") else None
    if answer is not None and answer not in parsed:
        report.reject("answer_not_in_options", label)
        return None

    if row_id is None:
        # Content-derived, so the same question gets the same id on every load.
        digest = hashlib.sha1(json.dumps([stem, parsed], sort_keys=True).encode()).hexdigest()[:16]
        row_id = f"q-{digest}"
    known = {"id", "question", "options", "answer", "gold", "source", "metadata", *STAGE_COLUMNS}
    metadata = row.get("metadata") or {}
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError:
            metadata = {"raw": metadata}
    if not isinstance(metadata, dict):
        metadata = {"raw": metadata}
    metadata = {**{k: v for k, v in row.items() if k not in known}, **metadata}
    if options is None and text != "\n".join([stem, *(f"{k}. {v}" for k, v in pairs)]):
        metadata[VERBATIM] = text  # e.g. trailing spaces or quotes the official prompt keeps
    return MCQRecord(
        id=row_id,
        question=stem,
        options=dict(sorted(parsed.items())),
        answer=answer,
        source=str(row.get("source") or row.get("name") or source),
        metadata=metadata,
        columns={k: row[k] for k in STAGE_COLUMNS if k in row},
    )


def _read_json(path: Path) -> Iterator[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordFormatError(f"{path}: not valid JSON ({e})") from e
    if isinstance(data, dict):
        # {"data": [...]} / {"rows": [...]} wrappers, or a single object
        for key in ("data", "rows", "questions", "train", "test"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            raise RecordFormatError(f"{path}: expected a JSON list of question objects, got an object")
    if not isinstance(data, list):
        raise RecordFormatError(
            f"{path}: expected a JSON list of question objects, got {type(data).__name__}"
        )
    yield from data


def _read_jsonl(path: Path) -> Iterator[Any]:
    with path.open("rb") as f:
        bad = 0
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise RecordFormatError(f"{path}:{lineno}: not UTF-8 text ({e})") from e
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                bad += 1
                if lineno == 1 or bad > 10:
                    raise RecordFormatError(f"{path}:{lineno}: not valid JSON lines ({e})") from e
                yield None  # counted as a bad row, the rest still loads


def _read_parquet(path: Path) -> Iterator[Any]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a file that is not parquet
        raise RecordFormatError(f"{path}: not a readable parquet file ({e})") from e
    yield from table.to_pylist()


READERS = {".json": _read_json, ".jsonl": _read_jsonl, ".parquet": _read_parquet}


def data_folder(path: Path) -> Path:
    """Where a folder's rows live: `data/` of a published dataset, or of the `dataset/` a stage wrote
    (`synthesize --output_dir X` writes X/dataset/data/), else the folder itself."""
    for candidate in (path / "dataset" / "data", path / "data"):
        if candidate.is_dir():
            return candidate
    return path


def _iter_source(
    source: str, revision: str | None, split: str | None, hub: str | None, subset: str | None = None
) -> Iterator[Any]:
    """Rows of one split of a file, a folder or a dataset repo (read from its files at `revision`); of
    its `subset` (a Hub config's folder) when one is named."""
    path = resolve_dataset(source, revision, hub)
    if subset:
        if not (path / subset).is_dir():
            configs = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            raise RecordFormatError(f"{source} has no config {subset!r}; it has {configs}")
        path = path / subset
    if path.is_dir():
        path = data_folder(path)
        by_split: dict[str, list[Path]] = {}
        for f in sorted(
            p for p in path.rglob("*") if p.suffix in READERS and p.name not in (MANIFEST, RUN_CONFIG)
        ):
            by_split.setdefault(split_of(f), []).append(f)
        by_split.pop("rejected", None)
        if not by_split:
            raise RecordFormatError(f"{path}: folder holds no .json, .jsonl or .parquet files")
        where = f"{source}@{revision}" if revision else str(source)
        for f in by_split[pick_split(by_split, split, where)]:
            yield from READERS[f.suffix](f)
        return
    reader = READERS.get(path.suffix)
    if reader is None:
        raise RecordFormatError(
            f"{path}: unsupported file type {path.suffix!r} (use .json, .jsonl or .parquet)"
        )
    yield from reader(path)


def load_records(
    source: str | Path,
    revision: str | None = None,
    split: str | None = None,
    source_name: str | None = None,
    hub: str | None = None,
    columns: ColumnMap | None = None,
    subset: str | None = None,
) -> tuple[list[MCQRecord], LoadReport]:
    """Load MCQ records from a file, a folder or a dataset repo id (pinned to `revision`).

    A repo id is read from `hub` (see `medssr_hub.hub.open_hub`); without one, from the local hub if it
    holds the repo, else from the Hub.

    `columns` maps another dataset's columns onto the record (`ColumnMap`); `subset` reads one config
    (folder) of a dataset repo. Bad rows are counted by reason in the returned report, never fatal; a
    source that is not what it claims raises `RecordFormatError`. Duplicate ids keep the first row.
    """
    source = str(source)
    name = source_name or Path(source).stem
    report = LoadReport(source=source, revision=revision)
    records: list[MCQRecord] = []
    seen: set[str] = set()
    limit = max_question_chars()
    for index, row in enumerate(_iter_source(source, revision, split, hub, subset)):
        record = normalize_row(columns.apply(row) if columns else row, index, name, report, limit)
        if record is None:
            continue
        if record.id in seen:
            report.reject("duplicate_id", record.id)
            continue
        seen.add(record.id)
        records.append(record)
    report.kept = len(records)
    # Rejections are logged where a person reads them; a clean load only with --log_level debug.
    logger.log(logging.WARNING if report.rejected else logging.DEBUG, "Loaded %s", report.summary())
    if not records and report.rejected:
        reasons = "; ".join(
            f"{reason} {count} (first: {', '.join(report.examples[reason])})"
            for reason, count in report.rejected.most_common()
        )
        raise RecordFormatError(
            f"no usable question in {source}: all {sum(report.rejected.values())} rejected: {reasons}"
        )
    return records, report


def records_to_dataset(records: Iterable[MCQRecord], features: Features = MCQ_FEATURES) -> Dataset:
    """Records as a dataset of `features` (a stage's schema): its columns, in its types."""
    return Dataset.from_list(project([r.to_row() for r in records], features), features=features)


def record_from_row(row: dict[str, Any]) -> MCQRecord:
    """Inverse of `MCQRecord.to_row` for rows already in the schema (e.g. read back from parquet)."""
    return MCQRecord(
        id=row["id"],
        question=row["question"],
        options={o["letter"]: o["text"] for o in row["options"]},
        answer=row.get("answer"),
        source=row.get("source") or "",
        metadata=json.loads(row["metadata"]) if row.get("metadata") else {},
        columns={k: row[k] for k in STAGE_COLUMNS if k in row},
    )
