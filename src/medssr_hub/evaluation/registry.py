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

from medssr_hub.paths import BENCHMARKS_ENV, benchmarks_dir, describe_benchmark_source
from medssr_hub.records import MCQRecord, load_records

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    file: str  # file name in the MedSSR evaluation folder
    hub_id: str | None = None  # a Hub dataset in the record schema / MedSSR format, where one exists
    revision: str | None = None
    rare: bool = False  # the leaderboard's rare-disease column


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("medqa", "MedQA", "medqa.json"),
        Benchmark("medmcqa", "MedMCQA", "medmcqa.json"),
        Benchmark("pubmedqa", "PubMedQA", "pubmedqa.json"),
        Benchmark("mmlu", "MMLU-medical", "mmlu.json"),
        Benchmark("bioasq", "BioASQ", "bioasq.json"),
        Benchmark("lancet", "Lancet", "lancet.json"),
        Benchmark("nejm", "NEJM", "nejm.json"),
        Benchmark("medbullets", "MedBullets", "medbullets.json"),
        Benchmark("medxpertqa", "MedXpertQA", "medxpertqa.json"),
        Benchmark("raredis", "RareDis-Sub", "raredis.json", hub_id="tdlhl/RareDis-Sub", rare=True),
        # Offline stand-in, never called RareDis-Sub: `medssr-hub raredis-subset` (catalogue name matches).
        Benchmark("raredis_catalogue", "Rare (catalogue-matched)", "raredis_catalogue.json", rare=True),
    )
}


class BenchmarkUnavailable(RuntimeError):
    pass


def parse_spec(spec: str | list[str] | None) -> list[str]:
    """'all' | 'NAME,NAME' | 'PATH.json,...' (mixed), or a list of those -> a list of names and paths."""
    items = [s.strip() for part in ([spec] if isinstance(spec, str) else spec or []) for s in part.split(",")]
    items = [s for s in items if s]
    return list(BENCHMARKS) if items in ([], ["all"]) else items


def locate(
    item: str, paths: dict[str, str] | None = None, hub: str | None = None
) -> tuple[str, str, str | None]:
    """(name, source, revision) for a registry name or a file path; raises BenchmarkUnavailable."""
    paths = paths or {}
    if item not in BENCHMARKS:
        path = Path(item).expanduser()
        if path.exists():
            return path.stem, str(path), None
        raise BenchmarkUnavailable(
            f"{item!r} is neither a benchmark ({', '.join(BENCHMARKS)}) nor an existing file"
        )
    bench = BENCHMARKS[item]
    if item in paths:
        return item, paths[item], bench.revision
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
    try:
        records, report = load_records(source, revision=revision, source_name=name, hub=hub)
    except Exception as e:  # a Hub dataset that cannot be reached offline, a malformed file, ...
        raise BenchmarkUnavailable(
            f"{name}: could not read {source}{'@' + revision if revision else ''} ({e}); provide the file "
            f"in ${BENCHMARKS_ENV} or set benchmark_paths: {{{name}: PATH}} in the YAML"
        ) from e
    if report.rejected:
        logger.warning("%s", report.summary())
    described = describe_benchmark_source(source) if Path(source).exists() else source
    return name, records[:max_items] if max_items else records, described


def is_rare(name: str) -> bool:
    return name in BENCHMARKS and BENCHMARKS[name].rare


def title(name: str) -> str:
    return BENCHMARKS[name].title if name in BENCHMARKS else name
