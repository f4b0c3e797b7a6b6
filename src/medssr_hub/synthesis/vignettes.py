"""Knowledge-grounded vignettes: rare-disease questions built from the catalogue, no LLM needed.

A vignette draws an age from the onset, findings from the disease's phenotypes by their frequencies, and
a family history from its inheritance, then asks for the diagnosis, the inheritance, the gene or the
most characteristic further finding. Distractors come from diseases with overlapping phenotype profiles,
so the question discriminates. The answer key is known by construction and stored in the record, which
later lets pseudo-labels be scored. (This goes beyond the paper, whose questions all come from an LLM.)
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cached_property

from medssr_hub.records import MCQRecord
from medssr_hub.synthesis.catalog import RareDisease, RareDiseaseCatalog

QUESTION_TYPES = {"diagnosis": 0.6, "inheritance": 0.15, "gene": 0.15, "finding": 0.1}
INHERITANCE_OPTIONS = [
    "Autosomal dominant inheritance",
    "Autosomal recessive inheritance",
    "X-linked recessive inheritance",
    "X-linked dominant inheritance",
    "Mitochondrial inheritance",
    "Multifactorial inheritance",
]
FAMILY_HISTORY = {
    "Autosomal dominant inheritance": "The {parent} has similar findings.",
    "Autosomal recessive inheritance": "The parents are healthy and consanguineous; an older sibling was similarly affected.",
    "X-linked recessive inheritance": "A maternal uncle had similar problems.",
    "X-linked dominant inheritance": "The mother and a maternal aunt have milder forms of similar findings.",
    "Mitochondrial inheritance": "The mother and several maternal relatives have related symptoms.",
}
LETTERS = "ABCDE"


@dataclass(frozen=True)
class VignetteSettings:
    num_options: int = 5
    min_findings: int = 3
    max_findings: int = 6
    min_phenotypes: int = 5  # diseases with fewer annotated phenotypes are not used
    question_types: tuple[tuple[str, float], ...] = tuple(QUESTION_TYPES.items())


def _age(disease: RareDisease, rng: random.Random) -> tuple[str, float]:
    """An age phrase and the age in years, drawn from the disease's onset (any age when unknown)."""
    onset = " ".join(disease.onset).lower()
    if "neonatal" in onset or "congenital" in onset:
        weeks = rng.randint(0, 4)
        return ("newborn", 0.0) if weeks == 0 else (f"{weeks}-week-old", weeks / 52)
    if "infantile" in onset:
        months = rng.randint(2, 11)
        return f"{months}-month-old", months / 12
    low, high = next(
        (
            (lo, hi)
            for key, lo, hi in (("childhood", 3, 10), ("juvenile", 11, 17), ("adult", 20, 60))
            if key in onset
        ),
        (1, 45),
    )
    years = rng.randint(low, high)
    return f"{years}-year-old", float(years)


def _lower_first(text: str) -> str:
    return text if text[:2].isupper() else text[:1].lower() + text[1:]


class VignetteGenerator:
    def __init__(self, catalog: RareDiseaseCatalog, settings: VignetteSettings = VignetteSettings()):
        self.catalog = catalog
        self.settings = settings

    @cached_property
    def eligible(self) -> list[RareDisease]:
        return [d for d in self.catalog if len(d.phenotype_ids) >= self.settings.min_phenotypes]

    @cached_property
    def _by_phenotype(self) -> dict[str, list[RareDisease]]:
        index: dict[str, list[RareDisease]] = defaultdict(list)
        for d in self.eligible:
            for hpo in d.phenotype_ids:
                index[hpo].append(d)
        return index

    def similar(self, disease: RareDisease, limit: int = 20) -> list[RareDisease]:
        """Diseases ranked by Jaccard overlap of phenotype profiles: the hardest distractors first."""
        overlap: Counter = Counter()
        for hpo in disease.phenotype_ids:
            bucket = self._by_phenotype.get(hpo, ())
            if len(bucket) < 400:  # very common findings (e.g. intellectual disability) say little
                for other in bucket:
                    overlap[other.id] += 1
        overlap.pop(disease.id, None)
        size = len(disease.phenotype_ids)
        by_id = self.catalog.by_id
        ranked = sorted(
            overlap,
            key=lambda i: (-overlap[i] / (size + len(by_id[i].phenotype_ids) - overlap[i]), i),
        )
        return [by_id[i] for i in ranked[:limit]]

    @staticmethod
    def applicable(disease: RareDisease, qtype: str) -> bool:
        """Whether the catalogue holds what a question of this type about this disease needs."""
        if qtype == "inheritance":
            return len(disease.inheritance) == 1 and disease.inheritance[0] in INHERITANCE_OPTIONS
        if qtype == "gene":
            return bool(disease.genes)
        if qtype == "finding":
            return any(p.frequency >= 0.8 for p in disease.phenotypes)
        return True

    def generate(
        self, disease: RareDisease, rng: random.Random, qtype: str | None = None
    ) -> MCQRecord | None:
        """One vignette about `disease`, or None when this question type cannot be asked about it."""
        if qtype is None:
            applicable = [(t, w) for t, w in self.settings.question_types if self.applicable(disease, t)]
            types, weights = zip(*applicable, strict=True)
            qtype = rng.choices(types, weights)[0]
        findings = self._findings(disease, rng)
        age, years = _age(disease, rng)
        sex = rng.choice(["man", "woman"] if years >= 18 else ["boy", "girl"])
        parent = rng.choice(["father", "mother"])
        article = "An" if age.startswith(("8", "11-", "18-")) else "A"
        stem = f"{article} {age} {sex} is evaluated for {', '.join(findings[:-1])} and {findings[-1]}."
        history = FAMILY_HISTORY.get(disease.inheritance[0]) if len(disease.inheritance) == 1 else None

        similar = self.similar(disease)
        pool_size = max(8, self.settings.num_options * 2)
        if qtype == "diagnosis":
            if history:
                stem += " " + history.format(parent=parent)
            answer = disease.name
            distractors = [d.name for d in similar[:pool_size]]
            question = "Which of the following is the most likely diagnosis?"
        elif qtype == "inheritance":
            if len(disease.inheritance) != 1 or disease.inheritance[0] not in INHERITANCE_OPTIONS:
                return None
            answer = disease.inheritance[0]
            distractors = [m for m in INHERITANCE_OPTIONS if m != answer]
            question = f"The patient is diagnosed with {disease.name}. What is the mode of inheritance of this condition?"
        elif qtype == "gene":
            if not disease.genes:
                return None
            answer = disease.genes[0]
            distractors = [g for d in similar for g in d.genes[:1] if g not in disease.genes][:pool_size]
            if history:
                stem += " " + history.format(parent=parent)
            question = "Genetic testing is most likely to show a pathogenic variant in which gene?"
        elif qtype == "finding":
            shown = set(findings)
            candidates = [
                p.name for p in disease.phenotypes if p.frequency >= 0.8 and _lower_first(p.name) not in shown
            ]
            if not candidates:
                return None
            answer = rng.choice(candidates)
            own = {p.name for p in disease.phenotypes}
            distractors = [
                p.name for d in similar for p in d.phenotypes if p.frequency >= 0.5 and p.name not in own
            ]
            distractors = list(dict.fromkeys(distractors))[:pool_size]
            question = "Which additional finding is most likely in this patient?"
        else:
            raise ValueError(f"unknown question type {qtype!r}")

        distractors = [d for d in dict.fromkeys(distractors) if d != answer]
        if len(distractors) < self.settings.num_options - 1:
            return None
        chosen = rng.sample(distractors[:pool_size], self.settings.num_options - 1)
        texts = [answer, *chosen]
        rng.shuffle(texts)
        options = dict(zip(LETTERS, texts, strict=False))
        letter = next(k for k, v in options.items() if v == answer)
        full_stem = f"{stem} {question}"
        digest = hashlib.sha1(f"{full_stem}|{'|'.join(texts)}".encode()).hexdigest()[:12]
        return MCQRecord(
            id=f"vignette-{disease.id.replace(':', '')}-{qtype}-{digest}",
            question=full_stem,
            options=options,
            answer=letter,
            source="vignette",
            metadata={
                "generator": "vignette",
                "qtype": qtype,
                "disease_id": disease.id,
                "findings": findings,
            },
        )

    def _findings(self, disease: RareDisease, rng: random.Random) -> list[str]:
        present = [p for p in disease.phenotypes if p.frequency > 0 and rng.random() < p.frequency]
        ranked = sorted((p for p in disease.phenotypes if p.frequency > 0), key=lambda p: -p.frequency)
        for p in ranked:  # too few drawn: top up with the most frequent
            if len(present) >= self.settings.min_findings:
                break
            if p not in present:
                present.append(p)
        rng.shuffle(present)
        return [_lower_first(p.name) for p in present[: self.settings.max_findings]]
