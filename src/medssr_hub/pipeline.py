"""The main job (`make demo`): the pipeline on the embedded default, as far as the project reaches.

Today it runs the answering half that labeling and evaluation share: benchmark questions -> n CoT
samples from the policy -> letters (with the recovery pass) -> majority vote -> a report. Later stages
(synthesis, labeling, training, evaluation) plug in here as they land.
Generations are appended per question as they finish, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from medssr_hub.answers import answer_prompt, extract_or_recover
from medssr_hub.config import YamlConfig, guard_resume
from medssr_hub.generation import SamplingParams, get_backend
from medssr_hub.labeling import majority_vote
from medssr_hub.records import MCQRecord, load_records
from medssr_hub.utils import (
    AppendLog,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_parquet,
    atomic_write_text,
    read_appended,
)

logger = logging.getLogger(__name__)
BENCHMARKS_ENV = "MEDSSR_BENCHMARKS_DIR"


@dataclass
class DemoConfig(YamlConfig):
    model: str = "embedded"
    chat: bool = True
    benchmarks_dir: str | None = None
    items_per_benchmark: int = 6
    num_samples: int = 2
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 20
    max_tokens: int = 192
    seed: int = 42
    batch_size: int = 64
    torch_threads: int | None = None
    output_dir: str = "outputs/demo"
    # Step 1, knowledge-enhanced synthesis: SynthesisConfig fields (None: skip).
    synthesis: dict[str, Any] | None = None
    # Step 2, pseudo-labels for the synthetic set: LabelConfig fields (None: skip). Vignette keys score them.
    labeling: dict[str, Any] | None = None
    # Step 3, stage 1 GRPO on the pseudo-labeled split: `config` (a recipe YAML) plus overrides of its
    # fields (None, or max_steps 0: skip). The benchmark step still answers with `model`.
    stage1: dict[str, Any] | None = None
    publish_repo: str | None = "medssr-hub/demo-answers"  # None: do not publish
    publish_version: str = "v0.1.0"
    hub: str | None = None  # None: the local hub; 'hf' or a URL: the Hub

    def run_fingerprint(self) -> dict[str, Any]:
        """Settings that change generations: a resumed run must match them."""
        keep = (
            "model",
            "chat",
            "items_per_benchmark",
            "num_samples",
            "temperature",
            "top_p",
            "top_k",
            "synthesis",
        )
        return {k: getattr(self, k) for k in (*keep, "max_tokens", "seed")}


def benchmarks_dir(configured: str | None = None) -> Path:
    """The configured folder, else $MEDSSR_BENCHMARKS_DIR, else ../shared/benchmarks; a named one must exist."""
    hint = (
        f"set {BENCHMARKS_ENV} (or benchmarks_dir in the config) to a folder of MedSSR-format JSON files "
        "(id, question with 'A. ...' option lines, gold)"
    )
    named = configured or os.environ.get(BENCHMARKS_ENV)
    if named:
        if not Path(named).is_dir():
            raise FileNotFoundError(f"No benchmarks folder at {named}: {hint}")
        return Path(named)
    if Path("../shared/benchmarks").is_dir():
        return Path("../shared/benchmarks")
    raise FileNotFoundError(f"No benchmarks folder: {hint}")


def load_demo_questions(cfg: DemoConfig) -> list[MCQRecord]:
    folder = benchmarks_dir(cfg.benchmarks_dir)
    records: list[MCQRecord] = []
    for path in sorted(folder.glob("*.json")):
        loaded, _ = load_records(path)
        records.extend(loaded[: cfg.items_per_benchmark])
    if not records:
        raise FileNotFoundError(f"{folder} holds no benchmark JSON files")
    return records


def synthesize_and_label(cfg: DemoConfig) -> dict[str, Any]:
    """Steps 1-2: synthesize (published), then pseudo-label what was synthesized (published)."""
    results: dict[str, Any] = {}
    if not cfg.synthesis:
        return results
    from medssr_hub.synthesis.synthesize import SynthesisConfig, run_synthesis

    out = Path(cfg.output_dir)
    shared = {"hub": cfg.hub, "model": cfg.model}
    syn_cfg = SynthesisConfig.from_yaml(
        None, **{**cfg.synthesis, **shared, "output_dir": str(out / "synthesis")}
    )
    results["synthesis"] = run_synthesis(syn_cfg)
    if cfg.labeling:
        from medssr_hub.labeling.label import LabelConfig, run_labeling

        source = {"input": str(Path(syn_cfg.output_dir) / "dataset"), "output_dir": str(out / "labeling")}
        if syn_cfg.publish_repo:  # read it back the way stage 1 will: from the hub, pinned to its version
            source["input"], source["revision"] = syn_cfg.publish_repo, syn_cfg.publish_version
        label_cfg = LabelConfig.from_yaml(None, **{**cfg.labeling, **shared, **source})
        results["labeling"] = run_labeling(label_cfg)
        if cfg.stage1 and cfg.stage1.get("max_steps", 1) and label_cfg.publish_repo:
            results["stage1"] = train_stage1(cfg, label_cfg)
    return results


def train_stage1(cfg: DemoConfig, label_cfg) -> dict[str, Any]:
    """Step 3: `recipes/stage1.py` in-process on the labeled split, read back from the hub by version.

    A finished run (its final folder exists) is not trained again; an interrupted one resumes from its
    last checkpoint.
    """
    from medssr_hub.training import grpo

    out = Path(cfg.output_dir) / "stage1"
    summary_file = out / "final" / "train_summary.json"
    if not summary_file.exists():
        overrides = {k: v for k, v in cfg.stage1.items() if k != "config"}
        overrides.update(
            model_name_or_path=cfg.model,
            dataset_name=label_cfg.publish_repo,
            dataset_revision=label_cfg.publish_version,
            output_dir=str(out),
            **({"hub": cfg.hub} if cfg.hub else {}),
        )
        argv = ["--config", cfg.stage1.get("config", "recipes/smollm2/stage1.yaml")]
        for key, value in overrides.items():
            argv += [f"--{key}", *(map(str, value) if isinstance(value, list) else [str(value)])]
        grpo.main(*grpo.parse_args(argv))
    trained = json.loads(summary_file.read_text())
    return {"steps": trained["global_step"], **trained["summary"]}


def run_demo(cfg: DemoConfig) -> dict[str, Any]:
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    guard_resume(out, cfg.run_fingerprint(), "demo")

    stages = synthesize_and_label(cfg)
    records = load_demo_questions(cfg)
    gen_file = out / "generations.jsonl"
    done = read_appended(gen_file)
    todo = [r for r in records if r.id not in done]
    logger.info(
        "%d questions from %d benchmarks; %d already generated",
        len(records),
        _count_sources(records),
        len(done),
    )

    backend = get_backend(
        "embedded", model=cfg.model, batch_size=cfg.batch_size, torch_threads=cfg.torch_threads
    )
    params = SamplingParams(
        n=cfg.num_samples,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=cfg.top_k,
        max_tokens=cfg.max_tokens,
        seed=cfg.seed,
    )
    if todo:
        with AppendLog(gen_file) as log:

            def persist(i: int, completion) -> None:
                row = {"id": todo[i].id, "samples": [asdict(s) for s in completion.samples]}
                log.write(row)
                done[todo[i].id] = row

            # A stable per-question seed, so a resumed run samples exactly what an uninterrupted one would.
            position = {r.id: k for k, r in enumerate(records)}
            seeds = [cfg.seed + position[r.id] for r in todo]
            backend.generate(
                [answer_prompt(r, chat=cfg.chat) for r in todo], params, seeds=seeds, on_complete=persist
            )

    generations = [[s["text"] for s in done[r.id]["samples"]] for r in records]
    answers = extract_or_recover(records, generations, backend, chat=cfg.chat)
    rows = []
    for record, texts, row_answers in zip(records, generations, answers, strict=True):
        vote = majority_vote([a.letter for a in row_answers])
        rows.append(
            {
                "id": record.id,
                "benchmark": record.source,
                "gold": record.answer,
                "preds": [a.letter for a in row_answers],
                "recovered": [a.recovered for a in row_answers],
                "majority": vote.label,
                "agreement": vote.agreement,
                "tie": vote.tie,
                "generations": texts,
            }
        )
    atomic_write_jsonl(out / "answers.jsonl", rows)
    summary = summarize(rows, cfg)
    summary["stages"] = {name: _headline(stats) for name, stats in stages.items()}
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", render_summary(summary))
    if cfg.publish_repo:
        summary["published"] = publish_answers(rows, summary, cfg)
    return summary


def publish_answers(rows: list[dict[str, Any]], summary: dict[str, Any], cfg: DemoConfig) -> str:
    """Publish the per-question answers and the summary as a versioned dataset with a card."""

    from medssr_hub.hub import publish
    from medssr_hub.hub.cards import dataset_card

    folder = Path(cfg.output_dir) / "publish"
    atomic_write_parquet(folder / "data" / "test-00000.parquet", rows)
    card = dataset_card(
        repo_id=cfg.publish_repo,
        version=cfg.publish_version,
        pretty_name="medssr-hub demo answers",
        summary="Chain-of-thought answers of the policy to benchmark questions, with extracted letters, "
        "recovery flags and majority votes (the main job of `make demo`).",
        stage="demo",
        num_rows=len(rows),
        data_files={"test": "data/test-*.parquet"},
        provenance={"policy model": cfg.model, "samples per question": cfg.num_samples, "seed": cfg.seed},
        counts={"questions": len(rows), "benchmarks": len(summary["per_benchmark"])},
        evaluation=render_summary(summary),
        config=asdict(cfg),
    )
    result = publish(folder, cfg.publish_repo, cfg.publish_version, card=card, hub=cfg.hub)
    return f"{result.repo_id}@{result.version} ({result.location})"


def _headline(stats: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "num_questions",
        "rare_ratio",
        "acceptance",
        "questions",
        "kept",
        "discarded",
        "mean_agreement",
        "label_accuracy",
        "label_accuracy_in_band",
        "steps",
        "reward, first / last logged",
        "parse_rate, mean",
        "key_accuracy, mean",
        "published",
    )
    return {k: stats[k] for k in keys if k in stats}


def _count_sources(records: list[MCQRecord]) -> int:
    return len({r.source for r in records})


def summarize(rows: list[dict[str, Any]], cfg: DemoConfig) -> dict[str, Any]:
    per_benchmark = {}
    for name in sorted({r["benchmark"] for r in rows}):
        group = [r for r in rows if r["benchmark"] == name]
        preds = [
            (p, rec, r["gold"]) for r in group for p, rec in zip(r["preds"], r["recovered"], strict=True)
        ]
        per_benchmark[name] = {
            "items": len(group),
            "sample_accuracy": _mean([p == g for p, _, g in preds]),
            "majority_accuracy": _mean([r["majority"] == r["gold"] for r in group]),
            "parse_rate": _mean([not rec for _, rec, _ in preds]),
            "recovery_rate": _mean([rec for _, rec, _ in preds]),
            "unanswered_rate": _mean([p is None for p, _, _ in preds]),
            "mean_agreement": _mean([r["agreement"] for r in group]),
            "ties": sum(r["tie"] for r in group),
        }
    overall = {
        k: _mean([v[k] for v in per_benchmark.values()])
        for k in ("sample_accuracy", "majority_accuracy", "parse_rate", "recovery_rate", "mean_agreement")
    }
    return {"config": asdict(cfg), "per_benchmark": per_benchmark, "average": overall}


def render_summary(summary: dict[str, Any]) -> str:
    cfg = summary["config"]
    lines = [
        f"# medssr-hub demo: {cfg['model']} ({cfg['num_samples']} samples/question, max {cfg['max_tokens']} tokens)",
        "",
        "| benchmark | items | sample acc | majority acc | parsed | recovered | mean agreement |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in summary["per_benchmark"].items():
        lines.append(
            f"| {name} | {m['items']} | {m['sample_accuracy']:.1%} | {m['majority_accuracy']:.1%} | "
            f"{m['parse_rate']:.1%} | {m['recovery_rate']:.1%} | {m['mean_agreement']:.2f} |"
        )
    for k, (name, headline) in enumerate(summary.get("stages", {}).items()):
        lines.insert(1 + k, f"- {name}: " + ", ".join(f"{key} {_fmt(v)}" for key, v in headline.items()))
    a = summary["average"]
    lines.append(
        f"| **average** | | {a['sample_accuracy']:.1%} | {a['majority_accuracy']:.1%} | {a['parse_rate']:.1%} | "
        f"{a['recovery_rate']:.1%} | {a['mean_agreement']:.2f} |"
    )
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def _mean(values: list[float | bool]) -> float:
    return float(statistics.fmean(values)) if values else 0.0
