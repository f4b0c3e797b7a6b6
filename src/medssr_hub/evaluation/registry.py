"""The paper's ten benchmarks: where each one's data comes from, and how to point it elsewhere.

A benchmark is read, in order, from: an explicit source (config `benchmark_paths` or `NAME=PATH` on the
command line), `$MEDSSR_BENCHMARKS_DIR/<file>` (the MedSSR evaluation format: `id`, `question` with
"A. ..." option lines, `gold`, `name`; then ../shared/benchmarks), or its Hub dataset (pinned revision)
where one is known. When no folder is configured at all, the 50-item samples shipped in the package
stand in for the four benchmarks whose licence allows it, and results name them as their source. Any
other MCQ file in that format is added by path and named after its file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from medssr_hub.columns import ColumnMap
from medssr_hub.errors import ServiceError
from medssr_hub.evaluation.official import (
    OFFICIAL,
    PREFIX,
    OfficialFileError,
    OfficialFileMismatch,
    fetch_official,
    official_items,
    source_name,
)
from medssr_hub.paths import BENCHMARKS_ENV, benchmarks_dir, describe_benchmark_source
from medssr_hub.records import MCQRecord, load_records

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    file: str  # file name in the MedSSR evaluation folder
    hub_id: str | None = None  # its Hub dataset, where one exists
    # The commit a reproduction reads. Each pin was read from a public source that names it (below), not
    # checked from this offline machine; "main" where none was found. Another revision:
    # `benchmark_paths: {name: ORG/NAME@REVISION}`.
    revision: str | None = None
    subsets: tuple[str, ...] = ()  # the Hub configs (folders) to read and join; () for the repo's default
    split: str | None = None  # None: test, else train, else the only split
    columns: ColumnMap | None = None  # None: the record schema or the MedSSR evaluation format
    rare: bool = False  # the leaderboard's rare-disease column
    # The item count its source states: a read of its Hub dataset at `revision` with another count is an
    # error naming both (a revision that moved, a partial download). None: no count stated.
    items: int | None = None


# Column mappings of the Hub datasets (column names from their dataset cards and public loaders).
MMLU_MEDICAL = (
    "anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
    "professional_medicine",
)  # fmt: skip
BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(  # options as a dict column, answer as a letter; test = the 1,273 MedSSR evaluates
            "medqa",
            "MedQA",
            "medqa.json",
            hub_id="GBaker/MedQA-USMLE-4-options",
            revision="0fb93dd23a7339b6dcd27e241cb9b5eca62d4d18",  # Hub API sha of main, 2026-08-11 (a card)
            split="test",
            columns=ColumnMap(options="options", answer="answer_idx", id=None),
        ),
        Benchmark(  # options as four columns, answer as a 0-based index (the test split has no answers).
            # The whole validation split (4,183); MedSSR evaluates a 1,200-item sample of it.
            "medmcqa",
            "MedMCQA",
            "medmcqa.json",
            hub_id="openlifescienceai/medmcqa",
            revision="91c6572c454088bf71b679ad90aa8dffcd0d5868",  # pinned by the KARMA eval registry
            split="validation",
            columns=ColumnMap(options=("opa", "opb", "opc", "opd"), answer="cop", answer_is="index"),
        ),
        Benchmark(  # the 500 official test questions (qiaojin/PubMedQA's pqa_labeled mixes them with the
            # 500 cross-validation ones); fields nested under `data`. The question alone, without the
            # abstract, as MedSSR's evaluation file has it.
            "pubmedqa",
            "PubMedQA",
            "pubmedqa.json",
            hub_id="openlifescienceai/pubmedqa",
            revision="50fc41dcd0bd6eb63c18d436d854c6f9e8f3c7e2",  # pinned by the KARMA eval registry
            split="test",
            columns=ColumnMap(question="data.Question", options="data.Options", answer="data.Correct Option"),
        ),
        Benchmark(  # options as a list column, answer as an index; the six medical subjects joined (1,089)
            "mmlu",
            "MMLU-medical",
            "mmlu.json",
            hub_id="cais/mmlu",
            revision="c30699e8356da336a370243923dbaf21066bb9fe",  # pinned by a public download script
            subsets=MMLU_MEDICAL,
            split="test",
            columns=ColumnMap(options="choices", answer="answer", answer_is="index", id=None),
        ),
        # No Hub dataset: the MedSSR evaluation files (tdlhl/MedSSR on GitHub, data/test_short_<name>.json).
        Benchmark("bioasq", "BioASQ", "bioasq.json"),
        Benchmark("lancet", "Lancet", "lancet.json"),
        Benchmark("nejm", "NEJM", "nejm.json"),
        Benchmark("medbullets", "MedBullets", "medbullets.json"),
        Benchmark(  # options as a dict column (A-J), answer as a letter; Text/test.jsonl (2,450)
            "medxpertqa",
            "MedXpertQA",
            "medxpertqa.json",
            hub_id="TsinghuaC3I/MedXpertQA",
            revision="main",
            subsets=("Text",),
            split="test",
            columns=ColumnMap(options="options", answer="label"),
        ),
        Benchmark(  # the MedSSR evaluation format: option lines inside the question, `gold`. 2,122 items, the
            # count its dataset card gives. Read at `main`: its commit could not be read when this was written
            # (no network), so the count check guards what `main` serves. Pin a commit once one is known.
            "raredis",
            "RareDis-Sub",
            "raredis.json",
            hub_id="tdlhl/RareDis-Sub",
            revision="main",
            rare=True,
            items=2122,
        ),
        # Offline stand-in, never called RareDis-Sub: `medssr-hub raredis-subset` (catalogue name matches).
        Benchmark("raredis_catalogue", "Rare (catalogue-matched)", "raredis_catalogue.json", rare=True),
    )
}


# `all`: the paper's ten (the catalogue-matched row is asked for by name, or comes from the demo).
PAPER_BENCHMARKS = tuple(name for name in BENCHMARKS if name != "raredis_catalogue")


class BenchmarkUnavailable(ServiceError):
    pass


class BenchmarkCountMismatch(ServiceError):
    """The registry's Hub dataset, read at its revision, does not hold the items its source states."""


def parse_spec(spec: str | list[str] | None) -> list[str]:
    """'all' | 'NAME,NAME' | 'PATH.json,...' (mixed), or a list of those -> a list of names and paths.
    `medssr-official` stands for the official repository's test files (`medssr-official:NAME` each)."""
    items = [s.strip() for part in ([spec] if isinstance(spec, str) else spec or []) for s in part.split(",")]
    items = [s for s in items if s]
    if items in ([], ["all"]):
        return list(PAPER_BENCHMARKS)
    return [x for item in items for x in (official_items() if item == OFFICIAL else [item])]


def locate(
    item: str, paths: dict[str, str] | None = None, hub: str | None = None
) -> tuple[str, str, str | None]:
    """(name, source, revision) for a registry name or a file path; raises BenchmarkUnavailable."""
    paths = paths or {}
    if item.startswith(PREFIX):  # the paper's own file, fetched once and checked (a mismatch raises)
        name = item.removeprefix(PREFIX)
        try:
            return name, str(fetch_official(name)), None
        except OfficialFileMismatch:
            raise
        except OfficialFileError as e:
            raise BenchmarkUnavailable(f"{name}: {e}") from e
    if item not in BENCHMARKS:
        path = Path(item).expanduser()
        if path.exists():
            return path.stem, str(path), None
        raise BenchmarkUnavailable(
            f"{item!r} is neither a benchmark ({', '.join(BENCHMARKS)}) nor an existing file"
        )
    bench = BENCHMARKS[item]
    if item in paths:
        value = str(paths[item])
        if "@" in value and not Path(value).expanduser().exists():  # ORG/NAME@REVISION
            source, _, revision = value.partition("@")
            return item, source, revision
        return item, value, bench.revision
    folder = benchmarks_dir()
    if folder is not None and (folder / bench.file).exists():
        return item, str(folder / bench.file), None
    if bench.hub_id:
        return item, bench.hub_id, bench.revision
    raise BenchmarkUnavailable(
        f"{bench.title} ({item}) is not available: put {bench.file} (MedSSR evaluation format: id, question "
        f"with 'A. ...' option lines, gold) in ${BENCHMARKS_ENV}"
        + (f" (now {folder})" if folder else "")
        + f', or set benchmark_paths: {{{item}: PATH}} in the YAML (--benchmark_paths \'{{"{item}": "PATH"}}\')'
    )


def load_benchmark(
    item: str, paths: dict[str, str] | None = None, hub: str | None = None, max_items: int | None = None
) -> tuple[str, list[MCQRecord], str]:
    """(name, records, source); unreachable data raises BenchmarkUnavailable with how to provide it."""
    name, source, revision = locate(item, paths, hub)
    bench = BENCHMARKS.get(name)
    entry = bench if bench is not None and bench.hub_id == source else None  # its Hub dataset: mapped
    records: list[MCQRecord] = []
    rejected = 0
    for subset in entry.subsets if entry and entry.subsets else (None,):
        try:
            part, report = load_records(
                source,
                revision=revision,
                split=entry.split if entry else None,
                source_name=name,
                hub=hub,
                columns=entry.columns if entry else None,
                subset=subset,
            )
        except Exception as e:  # a Hub dataset that cannot be reached offline, a malformed file, ...
            raise BenchmarkUnavailable(
                f"{name}: could not read {source}{'@' + revision if revision else ''} ({e}); provide the "
                f"file in ${BENCHMARKS_ENV} or set benchmark_paths: {{{name}: PATH}} in the YAML"
            ) from e
        if report.rejected:
            logger.warning("%s", report.summary())
        records += part
        rejected += sum(report.rejected.values())
    if entry is not None and entry.items is not None and name not in (paths or {}):  # the registry's read
        read = len(records) + rejected
        if read != entry.items:
            raise BenchmarkCountMismatch(
                f"{name}: {source}@{revision} holds {read:,} items, its card states {entry.items:,}; not the "
                f"benchmark the paper evaluates (pin another revision with benchmark_paths: "
                f"{{{name}: {source}@REVISION}}, or pass the file by path)"
            )
    if item.startswith(PREFIX):
        described = source_name(name)
    else:
        described = describe_benchmark_source(source) if Path(source).exists() else source
    return name, records[:max_items] if max_items else records, described


def is_rare(name: str) -> bool:
    return name in BENCHMARKS and BENCHMARKS[name].rare


def title(name: str) -> str:
    return BENCHMARKS[name].title if name in BENCHMARKS else name
