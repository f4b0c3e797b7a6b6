"""Scoring a model on the benchmarks with the paper's protocol, resumably, with per-item details.

Protocol (defaults): chain-of-thought prompt ending "The answer is [LETTER]" (chat vs base template by
explicit config), temperature 0.6, top_p 0.95, top_k 20, up to 2048 new tokens, 4 samples, seed 42;
letters read by the official rule (last "The answer is X" wins, offered letters only); unparseable
answers go through the constrained second pass and are flagged `recovered`; accuracy is the mean and
std (population, ddof=0) of the 4 per-sample accuracies. `mode: loglikelihood` instead ranks the
option letters by their probability after "The answer is " (one deterministic pass).

Output folder: `generations/<bench>.jsonl` (append-only, one line per finished item: what makes a run
resumable), `recovered/<bench>.jsonl` (the second pass's answers, by the hash of their inputs: a resumed
or repeated run redoes none), `details/<bench>.parquet` (one row per item and sample: id, gold,
generation, pred, recovered, correct), `results.json` and `results.md`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from medssr_hub import tracking
from medssr_hub.answers import (
    Answer,
    Extraction,
    answer_prompt,
    extract_or_recover,
    official_letters,
)
from medssr_hub.errors import ConfigError, InputError
from medssr_hub.evaluation.config import EvalConfig
from medssr_hub.evaluation.official import PREFIX as OFFICIAL_PREFIX
from medssr_hub.evaluation.recorded import RecordedGreedy
from medssr_hub.evaluation.registry import BenchmarkUnavailable, is_rare, load_benchmark, parse_spec, title
from medssr_hub.evaluation.runs import Run
from medssr_hub.evaluation.scoring import score
from medssr_hub.evaluation.tables import render_markdown
from medssr_hub.generation import BackendOwner, SamplingParams
from medssr_hub.generation.base import encode_prompt
from medssr_hub.modeling import model_id
from medssr_hub.published import publishable, published_config
from medssr_hub.records import MCQRecord
from medssr_hub.resolve import resolve_model
from medssr_hub.resume import AppendLog, content_hash, guard_resume, read_appended
from medssr_hub.schema import DETAILS_FEATURES
from medssr_hub.summary import StageSummary
from medssr_hub.utils import atomic_write_json, atomic_write_parquet, atomic_write_text

logger = logging.getLogger(__name__)


class Evaluator(BackendOwner):
    def __init__(self, cfg: EvalConfig, backend=None):
        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self._backend = backend  # one handed in stays its owner's: close() frees only one it built
        self.bar = tqdm(disable=True)  # run's one bar, in samples (items in mode loglikelihood)

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        guard_resume(self.out, cfg.fingerprint(), "evaluation")
        if cfg.display_name is None:  # an endpoint that no setting names: the model the server says it serves
            served = self.backend.identity()
            cfg.display_name = (
                model_id(served) if served != getattr(self.backend, "base_url", None) else "endpoint"
            )
        protocol = cfg.protocol
        results: dict[str, Any] = {
            "model": cfg.display_name,
            "extraction": cfg.extraction,
            "protocol": protocol,
            "config": published_config(cfg),  # no credentials, no local paths
            "benchmarks": {},
            "unavailable": {},
        }
        loaded = {}
        for item in parse_spec(cfg.benchmarks):
            try:
                name, records, source = load_benchmark(item, cfg.benchmark_paths, cfg.hub, cfg.max_items)
            except BenchmarkUnavailable as e:
                logger.warning("Skipping: %s", e)
                results["unavailable"][item.removeprefix(OFFICIAL_PREFIX)] = str(e)
                continue
            if not records:
                raise ConfigError(f"benchmark {name} ({publishable(source)}): no usable items")
            missing = [r.id for r in records if not r.answer]
            if missing:
                raise ConfigError(
                    f"benchmark {name} ({publishable(source)}): {len(missing)} of {len(records)} items have no "
                    f"gold answer (first: {', '.join(missing[:3])}); every benchmark item needs `gold`"
                )
            loaded[name] = (records, source)
        lighteval_scores = self.lighteval_generate(loaded) if cfg.engine == "lighteval" else {}
        per_item = cfg.num_samples if cfg.mode == "generative" else 1
        total = per_item * sum(len(records) for records, _ in loaded.values())
        self.bar = tqdm(
            total=total, desc=f"evaluate {cfg.display_name}", unit="sample" if per_item > 1 else "item"
        )
        for name, (records, source) in loaded.items():
            self.bar.set_postfix_str(name)
            metrics = self.run_benchmark(name, records)
            if name in lighteval_scores:
                metrics["lighteval_acc"] = lighteval_scores[name]
            results["benchmarks"][name] = {
                "title": title(name),
                "extraction": cfg.extraction if cfg.mode == "generative" else "loglikelihood",
                "protocol": protocol,
                "source": source,
                "rare": is_rare(name),
                **metrics,
            }
            atomic_write_json(self.out / "results.json", results)
        if not results["benchmarks"]:
            raise BenchmarkUnavailable(
                "no benchmark could be read: " + "; ".join(results["unavailable"].values())
            )
        self.bar.close()
        atomic_write_json(self.out / "results.json", results)
        atomic_write_text(
            self.out / "results.md", render_markdown([Run(results, None, f"run {self.out.name}")])
        )
        scores = results["benchmarks"].values()
        logger.info(
            "Evaluated %s: %d benchmarks, mean accuracy %.1f%% (%s), in %s",
            cfg.display_name,
            len(results["benchmarks"]),
            100 * sum(b["mean"] for b in scores) / len(results["benchmarks"]),
            protocol,
            self.out,
        )
        metrics = {f"{name}/{k}": b[k] for name, b in results["benchmarks"].items() for k in ("mean", "std")}
        tracking.log_summary(
            cfg.trackio_project, f"eval-{cfg.display_name}", metrics, {"extraction": cfg.extraction}
        )
        return results

    def lighteval_generate(self, loaded: dict[str, tuple[list[MCQRecord], str]]) -> dict[str, float]:
        """lighteval's Pipeline generates the benchmarks not yet generated (whole benchmarks at a time)."""
        from medssr_hub.evaluation.lighteval_tasks import run_lighteval  # imports lighteval: only when asked

        scores_file = self.out / "lighteval_scores.json"
        scores = json.loads(scores_file.read_text()) if scores_file.exists() else {}
        todo = {
            name: records
            for name, (records, _) in loaded.items()
            if {
                i: row.get("sha")
                for i, row in read_appended(self.out / "generations" / f"{name}.jsonl").items()
            }
            != self.item_hashes(records)
        }
        if todo:
            path, revision = resolve_model(self.cfg.model, self.cfg.model_revision, self.cfg.hub)
            if revision not in (None, "main"):
                raise InputError(
                    "engine lighteval needs a local model folder or a hub model pulled by revision"
                )
            hashes = {name: self.item_hashes(records) for name, records in todo.items()}
            scores.update(run_lighteval(self.cfg, path, todo, self.out, hashes))
            atomic_write_json(scores_file, scores)
        return scores

    def item_hashes(self, records: list[MCQRecord]) -> dict[str, str]:
        """Each item's identity for resuming: its prompt and the model answering it. A logged generation is
        reused only for the same identity: a changed question (same id) or another served model is
        generated again."""
        model = self.backend.identity()
        # The script's tokenization is another prompt (a second BOS on Llama-3): named only when on, so
        # the generations of runs without it keep their identity.
        tokens = ["script_bos"] if self.extraction().script_bos else []
        return {r.id: content_hash([answer_prompt(r, chat=self.cfg.chat), model, *tokens]) for r in records}

    def extraction(self) -> Extraction:
        """The configured rule for this model; the family rule reads the model's own config."""
        cfg = self.cfg
        model_type = self.backend.model_type if cfg.recovery_rule == "family" else None
        return Extraction(cfg.extraction, cfg.path_string, cfg.recovery_rule, model_type)

    def run_benchmark(self, name: str, records: list[MCQRecord]) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.mode != "generative":
            answers, texts = self.loglikelihood(records)
            metrics, rows = score(records, answers, texts, None)
        else:
            texts = self.generate(name, records)
            recorded = self.out / "recovered" / f"{name}.jsonl"
            backend = RecordedGreedy(self.backend, recorded) if cfg.recovery else None
            # Both rules on the same generations (each with its own recovery pass): the configured one
            # makes `mean`, `std` and the details; the other is reported beside it.
            configured = self.extraction()
            rules = {e.mode: e for e in (configured, configured.other())}
            by_rule = {}
            for mode, extraction in rules.items():
                answers = extract_or_recover(
                    records,
                    texts,
                    backend,
                    chat=cfg.chat,
                    extraction=extraction,
                    script_bos=configured.script_bos,
                )
                by_rule[mode] = score(records, answers, texts, extraction)
            metrics, rows = by_rule[cfg.extraction]
            for mode, (m, mode_rows) in by_rule.items():
                metrics[f"{mode}_mean"], metrics[f"{mode}_std"] = m["mean"], m["std"]
                for row, other in zip(rows, mode_rows, strict=True):  # per item and sample, each rule
                    row[f"{mode}_correct"] = other["correct"]
            if backend is not None:  # what the official pass biased, for results, cards and leaderboards
                recovery = rules["official"].recovery(backend.tokenizer, official_letters(records))
                metrics["recovery"] = recovery.as_dict()
        atomic_write_parquet(
            self.out / "details" / f"{name}.parquet",
            [{"benchmark": name, **r} for r in rows],
            DETAILS_FEATURES,
        )
        logger.info(
            "%s: %.1f%% +- %.1f (%d items x %d samples; parsed %.0f%%, recovered %.0f%%)",
            name,
            100 * metrics["mean"],
            100 * metrics["std"],
            metrics["items"],
            metrics["samples"],
            100 * metrics["parse_rate"],
            100 * metrics["recovery_rate"],
        )
        # What guessing scores: the mean over items of 1 / the options offered (the plot's chance line).
        metrics["chance"] = sum(1 / max(1, len(r.options)) for r in records) / len(records)
        return metrics

    def generate(self, name: str, records: list[MCQRecord]) -> list[list[str]]:
        """Samples for every record; finished items are read back, only the rest is generated."""
        cfg = self.cfg
        log_path = self.out / "generations" / f"{name}.jsonl"
        sha = self.item_hashes(records)
        logged = read_appended(log_path)
        done = {i: row for i, row in logged.items() if i in sha and row.get("sha") == sha[i]}
        todo = [r for r in records if r.id not in done]
        self.bar.update((len(records) - len(todo)) * cfg.num_samples)
        stale = sum(1 for r in records if r.id in logged and r.id not in done)
        if done or stale:
            logger.info(
                "%s: %d of %d items already generated%s",
                name,
                len(done),
                len(records),
                f"; {stale} generated for another question text or model are generated again"
                if stale
                else "",
            )
        if todo:
            self.check_context(name, todo)
            params = SamplingParams.of(cfg, n=cfg.num_samples, script_bos=self.extraction().script_bos)
            # A stable seed per item (from its position), so resumed runs sample what uninterrupted ones would.
            position = {r.id: k for k, r in enumerate(records)}
            with AppendLog(log_path) as log:

                def persist(i: int, completion) -> None:
                    row = {
                        "id": todo[i].id,
                        "sha": sha[todo[i].id],
                        "samples": [s.text for s in completion.samples],
                    }
                    log.write(row)
                    done[row["id"]] = row
                    self.bar.update(len(completion.samples))

                self.backend.generate(
                    [answer_prompt(r, chat=cfg.chat) for r in todo],
                    params,
                    seeds=[cfg.seed + position[r.id] for r in todo],
                    on_complete=persist,
                    progress=False,
                )
        return [done[r.id]["samples"] for r in records]

    def check_context(self, name: str, records: list[MCQRecord]) -> None:
        """Every prompt with its max_tokens fits the engine's context (vLLM's max_model_len), or the run stops
        naming the benchmark: past it vLLM would end the answer at the context's end, silently."""
        limit = getattr(self.backend, "max_model_len", None)
        tokenizer = getattr(self.backend, "tokenizer", None)
        if not limit or tokenizer is None:
            return
        script_bos = self.extraction().script_bos
        lengths = [
            len(encode_prompt(tokenizer, answer_prompt(r, chat=self.cfg.chat), script_bos)) for r in records
        ]
        over = [n for n in lengths if n + self.cfg.max_tokens > limit]
        if over:
            raise ConfigError(
                f"benchmark {name}: {len(over)} of {len(records)} prompts do not fit max_model_len {limit} with "
                f"max_tokens {self.cfg.max_tokens} (longest prompt: {max(over)} tokens); their answers would be "
                "cut at the context's end. Raise vllm.max_model_len (the official script's is 16,000) or lower "
                "max_tokens"
            )

    def loglikelihood(self, records: list[MCQRecord]) -> tuple[list[list[Answer]], list[list[str]]]:
        """The letter with the highest next-token score after "The answer is " (backends that declare
        `loglikelihood`: the embedded one)."""
        backend = self.backend
        if not backend.capabilities.loglikelihood:
            raise InputError(
                f"mode loglikelihood needs a backend with token probabilities (embedded), not {backend.name}"
            )
        answers, texts = [], []
        for record in records:
            self.bar.update(1)
            prompt = answer_prompt(record, chat=self.cfg.chat)
            if isinstance(prompt, str):
                prompt += "The answer is "
            else:  # continue an assistant turn that starts with the answer
                prompt = [*prompt, {"role": "assistant", "content": "The answer is"}]
            scores = backend.loglikelihood(prompt, record.letters)
            best = max(scores, key=scores.get)
            answers.append([Answer(best)])
            texts.append([" ".join(f"{k}:{v:.2f}" for k, v in scores.items())])
        return answers, texts


@dataclass(frozen=True)
class EvaluationSummary(StageSummary):
    """An evaluation: `stats` is its results.json (the leaderboard reads it as an `evaluation.runs.Run`),
    and the benchmarks that could not be run, each with why."""

    @property
    def unavailable(self) -> dict[str, str]:
        return self.stats.get("unavailable", {})


def run_evaluation(cfg: EvalConfig) -> EvaluationSummary:
    evaluator = Evaluator(cfg)
    try:
        return EvaluationSummary(evaluator.run())
    finally:
        evaluator.close()
