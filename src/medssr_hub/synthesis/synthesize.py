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
import logging
import math
import random
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from medssr_hub.decontamination import Decontaminator
from medssr_hub.generation import BackendOwner, SamplingParams, stage_model_id
from medssr_hub.hub import StageRelease
from medssr_hub.paths import BENCHMARKS_ENV, benchmarks_dir
from medssr_hub.records import MCQRecord, load_records
from medssr_hub.resume import guard_resume
from medssr_hub.synthesis.catalog import RareDisease, RareDiseaseCatalog
from medssr_hub.synthesis.config import BRANCHES, SynthesisConfig, SynthesisError, draw_rhos
from medssr_hub.synthesis.filters import (
    Deduplicator,
    ValidationSettings,
    check_rewrite,
    similarity,
    validate_question,
)
from medssr_hub.synthesis.knowledge import BM25Retriever, build_corpus, disease_card, load_documents
from medssr_hub.synthesis.plan import AttemptPlan
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
from medssr_hub.synthesis.release import SynthesisSummary, quota_message, record_of, write_release
from medssr_hub.synthesis.vignettes import VignetteGenerator
from medssr_hub.utils import atomic_write_jsonl, read_jsonl

logger = logging.getLogger(__name__)


class Synthesizer(BackendOwner):
    def __init__(self, cfg: SynthesisConfig):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.shards = self.out / "shards"  # one atomic file per chunk of attempts: what a resume replays
        self.release = self.out / "dataset"  # what is published: data/, rejected.jsonl, stats.json, README.md
        self._catalog: RareDiseaseCatalog | None = None

    # -- resources, built only when a branch needs them ---------------------------------------------
    @property
    def catalog(self) -> RareDiseaseCatalog:
        """The rare-disease catalogue, loaded the first time a branch needs it (`catalog_used` says so)."""
        if self._catalog is None:
            self._catalog = RareDiseaseCatalog(extra=self.cfg.catalog)
        return self._catalog

    @property
    def catalog_used(self) -> bool:
        return self._catalog is not None

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

    # -- one chunk of attempts -----------------------------------------------------------------------
    def _attempt_rng(self, branch: str, attempt: int) -> random.Random:
        return random.Random(f"{self.cfg.seed}:{branch}:{attempt}")

    def plan_attempt(self, branch: str, attempt: int) -> AttemptPlan:
        """What attempt `attempt` of `branch` asks for: disease, passages, exemplars, and a prompt or a record."""
        rng = self._attempt_rng(branch, attempt)
        generator = self.cfg.rare_generator if branch == "rare" else self.cfg.seed_generator
        plan = AttemptPlan(
            attempt=attempt,
            branch=branch,
            generator="vignette"
            if generator == "vignette"
            else f"llm:{stage_model_id(self.cfg.backend, self.cfg.model, self.cfg.endpoint)}",
        )
        if branch == "rare" or generator == "vignette":
            eligible, weights = self.diseases[generator == "vignette"]
            disease = rng.choices(eligible, weights)[0] if weights else rng.choice(eligible)
            plan.disease_id = disease.id
        if generator == "vignette":
            plan.record = self.vignettes.generate(self.catalog.by_id[plan.disease_id], rng)
            return plan
        exemplars = rng.sample(self.seeds, min(self.cfg.exemplars, len(self.seeds)))
        plan.seed_ids = [r.id for r in exemplars]
        if branch == "rare":
            disease = self.catalog.by_id[plan.disease_id]
            card = disease_card(disease)
            related = [
                p for p in self.retriever.search(disease.name, k=self.cfg.passages + 1) if p.id != card.id
            ]
            passages = [card, *related[: max(0, self.cfg.passages - 1)]]
            plan.passage_ids = [p.id for p in passages]
            plan.prompt = knowledge_prompt(disease.name, passages, exemplars)
        else:
            plan.prompt = seed_prompt(exemplars)
        plan.sample_seed = rng.randrange(2**31)
        return plan

    def run_chunk(self, branch: str, chunk: int) -> list[dict[str, Any]]:
        """One chunk of attempts, generated and screened: the rows its shard holds (status per attempt)."""
        size = self.cfg.chunk_size
        plans = [self.plan_attempt(branch, a) for a in range(chunk * size, (chunk + 1) * size)]
        if self.cfg.rewrite_vignettes:
            self._rewrite_vignettes([p for p in plans if p.generator == "vignette" and p.record is not None])
        for plan in plans:
            if plan.record is not None:
                self._screen(plan)
        llm = [p for p in plans if p.uses_llm]
        if llm:
            layout = {"regex": LAYOUT_REGEX, "grammar": LAYOUT_GBNF, "layout": self.cfg.constrain_layout}
            params = SamplingParams.of(self.cfg, n=1, **layout)
            if self.backend.capabilities.is_async and self.cfg.recover_answers:
                asyncio.run(self._generate_chained(llm, params))
            else:
                completions = self.backend.generate(
                    [p.prompt for p in llm], params, seeds=[p.sample_seed for p in llm], progress=False
                )
                for plan, completion in zip(llm, completions, strict=True):
                    self._take_generation(plan, completion)
                self._recover_answers([p for p in llm if p.needs_answer])
        return [plan.row() for plan in plans]

    def _rewrite_vignettes(self, plans: list[AttemptPlan]) -> None:
        """Fluent prose for vignette stems. Only the stem changes, so options and key stay as constructed;
        a rewrite that fails `check_rewrite` leaves the original stem (the reason is kept in metadata)."""
        if not plans:
            return
        params = SamplingParams(n=1, temperature=0.0, max_tokens=self.cfg.max_tokens)
        # Only the case is rewritten; the question sentence is re-attached as it was.
        parts = [p.record.question.rsplit(". ", 1) for p in plans]
        prompts = [rewrite_prompt(case + ".") for case, _ in parts]
        completions = self.backend.generate(prompts, params, progress=False)
        for plan, (_, question), completion in zip(plans, parts, completions, strict=True):
            record = plan.record
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

    def _screen(self, plan: AttemptPlan) -> None:
        """The checks that need no key, run as soon as a question exists: an LLM question's answer pass is
        then paid for only by questions that can still be accepted."""
        if reason := self._question_reason(plan.record, plan.seed_ids):
            plan.reject(reason)

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

    def _take_generation(self, plan: AttemptPlan, completion) -> None:
        plan.raw = completion.samples[0].text
        plan.record = self._record_from_text(plan)
        if plan.record is not None:
            self._screen(plan)

    @staticmethod
    def _answer_params(letters: tuple[str, ...]) -> SamplingParams:
        return SamplingParams(n=1, temperature=0.0, max_tokens=1, allowed_tokens=letters)

    @staticmethod
    def _take_answer(plan: AttemptPlan, completion) -> None:
        letter = completion.samples[0].text.strip()[:1]
        if letter in plan.record.options:
            plan.record.answer = letter
            plan.record.metadata["answer_source"] = "generator-recovered"
        else:
            plan.reject("no_answer", drop_record=True)

    def _recover_answers(self, plans: list[AttemptPlan]) -> None:
        """Questions written without an answer line: one greedy token after "Answer:", biased to the offered
        letters (the paper's recovery pass, applied to the generator). Off: they are rejected as no_answer."""
        if not plans:
            return
        if not self.cfg.recover_answers:
            for plan in plans:
                plan.reject("no_answer", drop_record=True)
            return
        by_letters: dict[tuple[str, ...], list[AttemptPlan]] = {}
        for plan in plans:
            by_letters.setdefault(tuple(plan.record.options), []).append(plan)
        for letters, group in by_letters.items():
            prompts = [key_prompt(p.prompt, p.raw) for p in group]
            completions = self.backend.generate(prompts, self._answer_params(letters), progress=False)
            for plan, completion in zip(group, completions, strict=True):
                self._take_answer(plan, completion)

    async def _generate_chained(self, plans: list[AttemptPlan], params: SamplingParams) -> None:
        """Server backends: each question's answer pass is sent as soon as its own generation returns, in
        the same concurrency slot. The continuation then meets its prefix still in the server's prompt cache
        (a llama.cpp slot, vLLM's or TGI's prefix cache), and no request waits for the chunk's slowest
        generation. The requests and seeds are those of the two-phase path the in-process backends take."""
        slots = asyncio.Semaphore(self.backend.max_concurrency)

        async def one(plan: AttemptPlan) -> None:
            async with slots:
                [completion] = await self.backend.agenerate(
                    [plan.prompt], params, seeds=[plan.sample_seed], progress=False
                )
                self._take_generation(plan, completion)
                if plan.needs_answer:
                    letters = tuple(plan.record.options)
                    [answer] = await self.backend.agenerate(
                        [key_prompt(plan.prompt, plan.raw)],
                        self._answer_params(letters),
                        progress=False,
                    )
                    self._take_answer(plan, answer)

        async with self.backend.session():
            await asyncio.gather(*(one(plan) for plan in plans))

    def _record_from_text(self, plan: AttemptPlan) -> MCQRecord | None:
        try:
            stem, options, answer = parse_generated(plan.raw)
        except ParseError as e:
            plan.reject(e.reason)
            return None
        return MCQRecord(
            id=f"synth-{plan.branch}-{plan.attempt:06d}",
            question=stem,
            options=options,
            answer=answer,
            source="medssr-synthesis",
            metadata={"generator": plan.generator},
        )

    # -- the run ----------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        guard_resume(self.out, cfg.fingerprint(), "synthesis", SynthesisError)
        StageRelease.of(cfg).check()  # a conflicting version is found now, not after the work

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
                    raise SynthesisError(quota_message(branch, quota, accepted, attempts, rejected))
                rows = self._load_or_run(branch, chunk)
                for row in rows:
                    if len(accepted[branch]) >= quota:
                        break  # the rest of the chunk is surplus: neither accepted nor counted
                    attempts[branch] += 1
                    if row["status"] == "ok":
                        row["status"] = dedup.check_and_add(record_of(row)) or "ok"
                    if row["status"] == "ok":
                        accepted[branch].append(row)
                        bar.update(1)
                    else:
                        rejected.append(row)
                chunk += 1
        bar.close()
        return write_release(self, rhos, slots, accepted, rejected, attempts)

    def _load_or_run(self, branch: str, chunk: int) -> list[dict[str, Any]]:
        shard = self.shards / f"{branch}-{chunk:05d}.jsonl"
        if shard.exists():
            return read_jsonl(shard)
        rows = self.run_chunk(branch, chunk)
        atomic_write_jsonl(shard, rows)
        return rows


def run_synthesis(cfg: SynthesisConfig) -> SynthesisSummary:
    synth = Synthesizer(cfg)
    try:
        return SynthesisSummary(synth.run())
    finally:
        synth.close()
