"""Knowledge-enhanced synthesis: N questions, a share alpha of them grounded in rare-disease knowledge.

For every question slot i a draw rho_i ~ U(0,1) decides its branch: rho < alpha -> a rare disease is
picked, its knowledge retrieved and injected (or a vignette built from it); otherwise a new question is
modelled on seed questions. The draws are stratified (rho_i = (perm_i + u_i) / N, each marginally
uniform), so the number of rare slots is alpha*N up to rounding, and each branch fills exactly its own
slots: rejections in one branch can never skew the ratio.

Attempts are deterministic (seeded by (seed, branch, attempt)) and run in fixed-size chunks, each saved
as an atomic shard. Dedup and quota filling replay the shards in order, so an interrupted run resumes
from its shards and ends with exactly the dataset an uninterrupted run produces.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from medssr_hub.config import (
    ConfigError,
    JsonDict,
    config_dict,
    engine_fingerprint,
    guard_resume,
    local_inputs_fingerprint,
    publishable,
)
from medssr_hub.decontamination import Decontaminator
from medssr_hub.errors import ServiceError
from medssr_hub.generation import SamplingParams, backend_for, check_backend, model_label
from medssr_hub.hub import RUN_CONFIG, check_publishable, publish
from medssr_hub.hub.cards import dataset_card
from medssr_hub.paths import BENCHMARKS_ENV, benchmarks_dir
from medssr_hub.records import MCQRecord, load_records, record_from_row
from medssr_hub.schema import SYNTHETIC_FEATURES
from medssr_hub.synthesis.catalog import RareDisease, RareDiseaseCatalog
from medssr_hub.synthesis.filters import (
    Deduplicator,
    ValidationSettings,
    check_rewrite,
    similarity,
    validate_answer,
    validate_question,
)
from medssr_hub.synthesis.knowledge import BM25Retriever, build_corpus, disease_card, load_documents
from medssr_hub.synthesis.prompts import (
    LAYOUT_GBNF,
    LAYOUT_REGEX,
    ParseError,
    key_prompt,
    knowledge_prompt,
    parse_generated,
    rewrite_prompt,
    seed_prompt,
)
from medssr_hub.synthesis.rare_ratio import RareDiseaseMatcher, rare_ratio
from medssr_hub.synthesis.vignettes import VignetteGenerator
from medssr_hub.utils import atomic_write_json, atomic_write_jsonl, atomic_write_parquet, read_jsonl

logger = logging.getLogger(__name__)
MAX_QUESTIONS = 10_000_000  # a run's plan and draws are held in memory
BRANCHES = ("rare", "seed")


class SynthesisError(ServiceError):
    pass


@dataclass
class SynthesisConfig:
    """`medssr-hub synthesize --config recipes/synthesis/config_demo.yaml [--field value ...]`."""

    num_questions: int = 100
    alpha: float = 0.3
    seed: int = 42
    seed_data: str | None = None  # seed questions: file, folder or dataset id; None: the benchmarks' MedQA
    seed_revision: str | None = None
    exemplars: int = 1
    rare_generator: str = "llm"  # llm | vignette
    seed_generator: str = "llm"  # llm | vignette (vignette here only for ablations and tests)
    backend: str = "embedded"  # embedded | vllm | endpoint
    model: str = "embedded"  # embedded | a folder | a model repo id (local hub first, then the Hub)
    model_revision: str | None = None
    endpoint: JsonDict = field(default_factory=JsonDict)  # EndpointBackend arguments (base_url, route, ...)
    vllm: JsonDict = field(
        default_factory=JsonDict
    )  # vllm.LLM arguments (dtype, gpu_memory_utilization, ...)
    disease_sampling: str = "uniform"  # uniform | phenotypes (weighted by annotated phenotypes)
    passages: int = 3
    documents: list[str] = field(default_factory=list)
    catalog: list[str] = field(default_factory=list)
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 50
    max_tokens: int = 320
    batch_size: int = 32
    chunk_size: int = 16
    max_attempts_per_question: int = 12
    recover_answers: bool = True  # ask the generator for the letter when it wrote no answer line
    rewrite_vignettes: bool = False  # the LLM rewrites vignette stems into prose (validated; key kept)
    constrain_layout: bool = True  # embedded generator: enforce stem / A.-E. / Answer: token by token
    dedup_threshold: float = 0.8
    decontaminate: list[str] | None = None  # eval sets; None: every file in the benchmarks folder
    decontam_ngram: int = 13
    output_dir: str = "outputs/synthesis"
    publish_repo: str | None = None
    publish_version: str = "v0.1.0"
    hub: str | None = None

    def __post_init__(self) -> None:
        self.endpoint, self.vllm = JsonDict(self.endpoint), JsonDict(self.vllm)
        if not 1 <= self.num_questions <= MAX_QUESTIONS:
            raise ConfigError(
                f"num_questions must be between 1 and {MAX_QUESTIONS:,} (MedSSR synthesized 43K), "
                f"got {self.num_questions:,}"
            )
        for name in ("chunk_size", "batch_size", "max_attempts_per_question", "max_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        for name in ("rare_generator", "seed_generator"):
            if getattr(self, name) not in ("llm", "vignette"):
                raise ConfigError(f"{name} must be 'llm' or 'vignette', got {getattr(self, name)!r}")
        check_backend(self.backend)

    def fingerprint(self) -> dict[str, Any]:
        """Everything that changes which attempts are made: a resumed run must match it."""
        skip = {"num_questions", "output_dir", "publish_repo", "publish_version", "hub", "batch_size", "vllm"}
        settings = {k: v for k, v in config_dict(self).items() if k not in skip}
        return settings | engine_fingerprint(self.vllm) | {"inputs": self.inputs_fingerprint()}

    def inputs_fingerprint(self) -> dict[str, str]:
        """What the local input files hold: seed questions (the seed branch only), catalogue, documents."""
        seeds = self.seed_data
        if seeds is None and self.alpha < 1 and (folder := benchmarks_dir()) is not None:
            seeds = str(folder / "medqa.json")
        return local_inputs_fingerprint([seeds if self.alpha < 1 else None, *self.catalog, *self.documents])


def draw_rhos(n: int, seed: int) -> np.ndarray:
    """Stratified U(0,1) draws: one in each of n equal strata, in a seeded random order."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(n) + rng.random(n)) / n


class Synthesizer:
    def __init__(self, cfg: SynthesisConfig):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.shards = self.out / "shards"  # one atomic file per chunk of attempts: what a resume replays
        self.release = self.out / "dataset"  # what is published: data/, rejected.jsonl, stats.json, README.md

    # -- resources, built only when a branch needs them ---------------------------------------------
    @cached_property
    def catalog(self) -> RareDiseaseCatalog:
        return RareDiseaseCatalog(extra=self.cfg.catalog)

    @cached_property
    def retriever(self) -> BM25Retriever:
        documents = [p for source in self.cfg.documents for p in load_documents(source, hub=self.cfg.hub)]
        return BM25Retriever(build_corpus(self.catalog, documents))

    @cached_property
    def diseases(self) -> dict[bool, tuple[list[RareDisease], list[float] | None]]:
        """Diseases to draw from (and weights, if sampling by phenotype count): [False] for LLM prompts,
        [True] for vignettes, which need enough annotated phenotypes to describe a case."""
        pools = {False: [d for d in self.catalog if d.phenotypes], True: self.vignettes.eligible}
        weighted = self.cfg.disease_sampling == "phenotypes"
        return {k: (v, [len(d.phenotypes) for d in v] if weighted else None) for k, v in pools.items()}

    @cached_property
    def seeds(self) -> list[MCQRecord]:
        source = self.cfg.seed_data
        if source is None:
            folder = benchmarks_dir()
            if folder is None:
                raise SynthesisError(
                    "the seed branch needs seed questions: set seed_data (a file, folder or dataset repo id), "
                    f"or {BENCHMARKS_ENV} to a folder holding medqa.json"
                )
            source = str(folder / "medqa.json")
        records, report = load_records(source, revision=self.cfg.seed_revision, hub=self.cfg.hub)
        logger.info("Seed questions: %s", report.summary())
        return records

    @cached_property
    def vignettes(self) -> VignetteGenerator:
        return VignetteGenerator(self.catalog)

    @cached_property
    def decontaminator(self) -> Decontaminator:
        sources = self.cfg.decontaminate
        if sources is None:
            folder = benchmarks_dir()
            sources = [str(p) for p in sorted(folder.glob("*.json"))] if folder else []
        records = [r for s in sources for r in load_records(s, hub=self.cfg.hub)[0]]
        logger.info(
            "Decontaminating against %d evaluation questions from %d sources", len(records), len(sources)
        )
        return Decontaminator(records, n=self.cfg.decontam_ngram)

    @cached_property
    def backend(self):
        return backend_for(self.cfg)

    # -- one chunk of attempts -----------------------------------------------------------------------
    def _attempt_rng(self, branch: str, attempt: int) -> random.Random:
        return random.Random(f"{self.cfg.seed}:{branch}:{attempt}")

    def plan_attempt(self, branch: str, attempt: int) -> dict[str, Any]:
        """What attempt `attempt` of `branch` asks for: disease, passages, exemplars, and a prompt or a record."""
        rng = self._attempt_rng(branch, attempt)
        plan: dict[str, Any] = {
            "attempt": attempt,
            "branch": branch,
            "disease_id": None,
            "passage_ids": [],
            "seed_ids": [],
        }
        generator = self.cfg.rare_generator if branch == "rare" else self.cfg.seed_generator
        plan["generator"] = (
            "vignette"
            if generator == "vignette"
            else f"llm:{model_label(self.cfg.backend, self.cfg.model, self.cfg.endpoint)}"
        )
        if branch == "rare" or generator == "vignette":
            eligible, weights = self.diseases[generator == "vignette"]
            disease = rng.choices(eligible, weights)[0] if weights else rng.choice(eligible)
            plan["disease_id"] = disease.id
        if generator == "vignette":
            plan["record"] = self.vignettes.generate(self.catalog.by_id[plan["disease_id"]], rng)
            return plan
        exemplars = rng.sample(self.seeds, min(self.cfg.exemplars, len(self.seeds)))
        plan["seed_ids"] = [r.id for r in exemplars]
        if branch == "rare":
            disease = self.catalog.by_id[plan["disease_id"]]
            card = disease_card(disease)
            related = [
                p for p in self.retriever.search(disease.name, k=self.cfg.passages + 1) if p.id != card.id
            ]
            passages = [card, *related[: max(0, self.cfg.passages - 1)]]
            plan["passage_ids"] = [p.id for p in passages]
            plan["prompt"] = knowledge_prompt(disease.name, passages, exemplars)
        else:
            plan["prompt"] = seed_prompt(exemplars)
        plan["sample_seed"] = rng.randrange(2**31)
        return plan

    def run_chunk(self, branch: str, chunk: int) -> list[dict[str, Any]]:
        """One chunk of attempts, generated and screened: the rows its shard holds (status per attempt)."""
        size = self.cfg.chunk_size
        plans = [self.plan_attempt(branch, a) for a in range(chunk * size, (chunk + 1) * size)]
        if self.cfg.rewrite_vignettes:
            self._rewrite_vignettes([p for p in plans if p["generator"] == "vignette" and p.get("record")])
        for plan in plans:
            if plan.get("record") is not None:
                self._screen(plan)
        llm = [p for p in plans if "prompt" in p]
        if llm:
            params = SamplingParams(
                n=1,
                temperature=self.cfg.temperature,
                top_p=self.cfg.top_p,
                top_k=self.cfg.top_k,
                max_tokens=self.cfg.max_tokens,
                seed=self.cfg.seed,
                regex=LAYOUT_REGEX,
                grammar=LAYOUT_GBNF,
                layout=self.cfg.constrain_layout,
            )
            if hasattr(self.backend, "session") and self.cfg.recover_answers:
                asyncio.run(self._generate_chained(llm, params))
            else:
                completions = self.backend.generate(
                    [p["prompt"] for p in llm], params, seeds=[p["sample_seed"] for p in llm], progress=False
                )
                for plan, completion in zip(llm, completions, strict=True):
                    self._take_generation(plan, completion)
                self._recover_answers([p for p in llm if self._needs_answer(p)])
        rows = []
        for plan in plans:
            record = plan.get("record")
            status = plan.pop("reason", None)
            if record is None and status is None:
                status = "not_applicable"
            if record is not None and status is None:
                status = validate_answer(record) or "ok"  # the key-free checks ran in _screen
            rows.append(
                {
                    "attempt": plan["attempt"],
                    "branch": branch,
                    "status": status,
                    "generator": plan["generator"],
                    "disease_id": plan["disease_id"],
                    "passage_ids": plan["passage_ids"],
                    "seed_ids": plan["seed_ids"],
                    "record": record.to_row() if record is not None else None,
                    "raw": plan.get("raw"),
                }
            )
        return rows

    def _rewrite_vignettes(self, plans: list[dict[str, Any]]) -> None:
        """Fluent prose for vignette stems. Only the stem changes, so options and key stay as constructed;
        a rewrite that fails `check_rewrite` leaves the original stem (the reason is kept in metadata)."""
        if not plans:
            return
        params = SamplingParams(n=1, temperature=0.0, max_tokens=self.cfg.max_tokens)
        # Only the case is rewritten; the question sentence is re-attached as it was.
        parts = [p["record"].question.rsplit(". ", 1) for p in plans]
        prompts = [rewrite_prompt(case + ".") for case, _ in parts]
        completions = self.backend.generate(prompts, params, progress=False)
        for plan, (_, question), completion in zip(plans, parts, completions, strict=True):
            record = plan["record"]
            paragraph = completion.samples[0].text.strip().split("\n\n")[0]  # models often run on after it
            text = " ".join(paragraph.split()) + " " + question
            reason = check_rewrite(record, text, record.metadata.get("findings", []))
            if reason is None:
                record.metadata["original_stem"] = record.question
                record.question = text
            record.metadata["rewrite"] = reason or "accepted"

    def _question_reason(self, record: MCQRecord, seed_ids: list[str]) -> str | None:
        """Why a question is rejected whatever its key: layout, a copied exemplar, contamination."""
        return (
            validate_question(record, ValidationSettings())
            or self._copies_exemplar(record, seed_ids)
            or self.decontaminator.check(record)
        )

    def _screen(self, plan: dict[str, Any]) -> None:
        """The checks that need no key, run as soon as a question exists: an LLM question's answer pass is
        then paid for only by questions that can still be accepted."""
        if reason := self._question_reason(plan["record"], plan["seed_ids"]):
            plan["reason"] = reason

    def _copies_exemplar(self, record: MCQRecord, seed_ids: list[str]) -> str | None:
        """Small generators often return their example nearly verbatim: that is not a new question."""
        if not seed_ids:
            return None
        by_id = self._seeds_by_id
        if any(similarity(record.question, by_id[i].question) >= self.cfg.dedup_threshold for i in seed_ids):
            return "copies_exemplar"
        return None

    @cached_property
    def _seeds_by_id(self) -> dict[str, MCQRecord]:
        return {r.id: r for r in self.seeds}

    def _take_generation(self, plan: dict[str, Any], completion) -> None:
        plan["raw"] = completion.samples[0].text
        plan["record"] = self._record_from_text(plan)
        if plan["record"] is not None:
            self._screen(plan)

    @staticmethod
    def _needs_answer(plan: dict[str, Any]) -> bool:
        return plan.get("record") is not None and "reason" not in plan and plan["record"].answer is None

    @staticmethod
    def _answer_params(letters: tuple[str, ...]) -> SamplingParams:
        return SamplingParams(n=1, temperature=0.0, max_tokens=1, allowed_tokens=letters)

    @staticmethod
    def _take_answer(plan: dict[str, Any], completion) -> None:
        letter = completion.samples[0].text.strip()[:1]
        if letter in plan["record"].options:
            plan["record"].answer = letter
            plan["record"].metadata["answer_source"] = "generator-recovered"
        else:
            plan["reason"], plan["record"] = "no_answer", None

    def _recover_answers(self, plans: list[dict[str, Any]]) -> None:
        """Questions written without an answer line: one greedy token after "Answer:", biased to the offered
        letters (the paper's recovery pass, applied to the generator). Off: they are rejected as no_answer."""
        if not plans:
            return
        if not self.cfg.recover_answers:
            for plan in plans:
                plan["reason"], plan["record"] = "no_answer", None
            return
        by_letters: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for plan in plans:
            by_letters.setdefault(tuple(plan["record"].options), []).append(plan)
        for letters, group in by_letters.items():
            prompts = [key_prompt(p["prompt"], p["raw"]) for p in group]
            completions = self.backend.generate(prompts, self._answer_params(letters), progress=False)
            for plan, completion in zip(group, completions, strict=True):
                self._take_answer(plan, completion)

    async def _generate_chained(self, plans: list[dict[str, Any]], params: SamplingParams) -> None:
        """Server backends: each question's answer pass is sent as soon as its own generation returns, in
        the same concurrency slot. The continuation then meets its prefix still in the server's prompt cache
        (a llama.cpp slot, vLLM's or TGI's prefix cache), and no request waits for the chunk's slowest
        generation. The requests and seeds are those of the two-phase path the in-process backends take."""
        slots = asyncio.Semaphore(self.backend.max_concurrency)

        async def one(plan: dict[str, Any]) -> None:
            async with slots:
                [completion] = await self.backend.agenerate(
                    [plan["prompt"]], params, seeds=[plan["sample_seed"]], progress=False
                )
                self._take_generation(plan, completion)
                if self._needs_answer(plan):
                    letters = tuple(plan["record"].options)
                    [answer] = await self.backend.agenerate(
                        [key_prompt(plan["prompt"], plan["raw"])],
                        self._answer_params(letters),
                        progress=False,
                    )
                    self._take_answer(plan, answer)

        async with self.backend.session():
            await asyncio.gather(*(one(plan) for plan in plans))

    def _record_from_text(self, plan: dict[str, Any]) -> MCQRecord | None:
        try:
            stem, options, answer = parse_generated(plan["raw"])
        except ParseError as e:
            plan["reason"] = e.reason
            return None
        return MCQRecord(
            id=f"synth-{plan['branch']}-{plan['attempt']:06d}",
            question=stem,
            options=options,
            answer=answer,
            source="medssr-synthesis",
            metadata={"generator": plan["generator"]},
        )

    # -- the run ----------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        guard_resume(self.out, cfg.fingerprint(), "synthesis", SynthesisError)
        if cfg.publish_repo:  # a conflicting version is found now, not after the work
            check_publishable(
                cfg.publish_repo, cfg.publish_version, publishable(config_dict(cfg)), hub=cfg.hub
            )

        rhos = draw_rhos(cfg.num_questions, cfg.seed)
        slots = {b: [i for i, r in enumerate(rhos) if (r < cfg.alpha) == (b == "rare")] for b in BRANCHES}
        dedup = Deduplicator(cfg.dedup_threshold)
        accepted: dict[str, list[dict[str, Any]]] = {b: [] for b in BRANCHES}
        rejected: list[dict[str, Any]] = []
        attempts: Counter = Counter()
        bar = tqdm(total=cfg.num_questions, desc="synthesize", unit="question")
        for branch in BRANCHES:
            quota = len(slots[branch])
            max_chunks = math.ceil(quota * cfg.max_attempts_per_question / cfg.chunk_size)
            chunk = 0
            while len(accepted[branch]) < quota:
                if chunk >= max_chunks:
                    raise SynthesisError(self._quota_message(branch, quota, accepted, attempts, rejected))
                rows = self._load_or_run(branch, chunk)
                for row in rows:
                    if len(accepted[branch]) >= quota:
                        break  # the rest of the chunk is surplus: neither accepted nor counted
                    attempts[branch] += 1
                    if row["status"] == "ok":
                        row["status"] = dedup.check_and_add(_record(row)) or "ok"
                    if row["status"] == "ok":
                        accepted[branch].append(row)
                        bar.update(1)
                    else:
                        rejected.append(row)
                chunk += 1
        bar.close()
        return self._write_release(rhos, slots, accepted, rejected, attempts)

    def _load_or_run(self, branch: str, chunk: int) -> list[dict[str, Any]]:
        shard = self.shards / f"{branch}-{chunk:05d}.jsonl"
        if shard.exists():
            return read_jsonl(shard)
        rows = self.run_chunk(branch, chunk)
        atomic_write_jsonl(shard, rows)
        return rows

    @staticmethod
    def _quota_message(branch, quota, accepted, attempts, rejected) -> str:
        reasons = Counter(r["status"] for r in rejected if r["branch"] == branch)
        rates = {b: f"{len(accepted[b])}/{attempts[b]}" for b in BRANCHES if attempts[b]}
        return (
            f"the {branch} branch filled {len(accepted[branch])} of its {quota} questions within its attempt budget; "
            f"acceptance (accepted/attempts): {rates}; {branch} rejections: {dict(reasons.most_common())}. "
            "Use a stronger generator, raise max_attempts_per_question, or lower num_questions."
        )

    def _write_release(self, rhos, slots, accepted, rejected, attempts) -> dict[str, Any]:
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
        atomic_write_parquet(self.release / "data" / "train-00000.parquet", table, SYNTHETIC_FEATURES)
        atomic_write_jsonl(self.release / "rejected.jsonl", rejected)
        records = [_record({"record": r}) for r in table]
        content = rare_ratio(records, RareDiseaseMatcher(self.catalog)) if records else None
        stats = {
            "num_questions": len(table),
            "alpha": self.cfg.alpha,
            "rare_ratio": sum(r["rare"] for r in table) / max(1, len(table)),
            "rare_ratio_by_names": content.ratio if content else 0.0,
            "attempts": dict(attempts),
            "acceptance": {b: len(slots[b]) / attempts[b] if attempts[b] else None for b in BRANCHES},
            "rejections": dict(Counter(r["status"] for r in rejected).most_common()),
            "rejections_by_branch": {
                b: dict(Counter(r["status"] for r in rejected if r["branch"] == b).most_common())
                for b in BRANCHES
            },
            "catalog": self.catalog.version if "catalog" in self.__dict__ else None,  # only when it was used
            "vignette_rewrites": dict(
                Counter(
                    json.loads(r["metadata"]).get("rewrite") for r in table if r["generator"] == "vignette"
                )
            )
            if self.cfg.rewrite_vignettes
            else None,
        }
        atomic_write_json(self.release / "stats.json", stats)
        logger.info(
            "Synthesized %d questions (rare %.1f%%, alpha %.2f); rejections %s",
            len(table),
            100 * stats["rare_ratio"],
            self.cfg.alpha,
            stats["rejections"],
        )
        if self.cfg.publish_repo:
            stats["published"] = self._publish(stats)
        return stats

    def _publish(self, stats: dict[str, Any]) -> str:
        cfg = self.cfg
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
                "generator": model_label(cfg.backend, cfg.model, cfg.endpoint),
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
            config=publishable(config_dict(cfg)),
            tags=["synthetic", "rare-diseases"],
        )
        atomic_write_json(self.release / RUN_CONFIG, publishable(config_dict(cfg)))
        result = publish(self.release, cfg.publish_repo, cfg.publish_version, card=card, hub=cfg.hub)
        return f"{result.repo_id}@{result.version} ({result.location})"


def _record(row: dict[str, Any]) -> MCQRecord:
    return record_from_row(row["record"])


def run_synthesis(cfg: SynthesisConfig) -> dict[str, Any]:
    return Synthesizer(cfg).run()
