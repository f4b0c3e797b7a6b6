"""`medssr-hub`: the command line. Each subcommand is a thin wrapper over a stage's Python API."""

from __future__ import annotations

import argparse
import sys

from medssr_hub import __version__


def _demo(args: argparse.Namespace) -> int:
    from medssr_hub.pipeline import DemoConfig, render_summary, run_demo

    cfg = DemoConfig.from_yaml(
        args.config,
        model=args.model,
        items_per_benchmark=args.items_per_benchmark,
        num_samples=args.num_samples,
        max_tokens=args.max_tokens,
        batch_size=args.batch_size,
        output_dir=args.output,
        hub=args.hub,
        benchmarks_dir=args.benchmarks_dir,
    )
    if args.stage1_steps is not None:
        cfg.stage1 = {**(cfg.stage1 or {}), "max_steps": args.stage1_steps}
    summary = run_demo(cfg)
    print(render_summary(summary))
    print(f"Results in {cfg.output_dir}/ (summary.md, leaderboard/, eval/<model>/details/, stage1/final/)")
    if summary.get("published"):
        print(f"Published the leaderboard as {summary['published']}")
    return 0


def _embedded_model(args: argparse.Namespace) -> int:
    from medssr_hub.modeling import ensure_embedded_model

    print(ensure_embedded_model())
    return 0


def _publish(args: argparse.Namespace) -> int:
    from medssr_hub.hub import publish

    result = publish(
        args.path,
        args.repo_id,
        args.version,
        repo_type=args.repo_type,
        hub=args.hub,
        private=args.private,
        branch=args.branch,
        message=args.message,
    )
    state = "published" if result.created else "already published (same content)"
    print(
        f"{result.repo_type} {result.repo_id}@{result.version} {state}: commit {result.commit[:12]} at {result.location}"
    )
    return 0


def _pull(args: argparse.Namespace) -> int:
    from medssr_hub.hub import open_hub

    path = open_hub(args.hub).pull(args.repo_id, args.revision, repo_type=args.repo_type, output=args.output)
    print(path)
    return 0


def _synthesize(args: argparse.Namespace) -> int:
    from medssr_hub.synthesis.synthesize import SynthesisConfig, run_synthesis

    cfg = SynthesisConfig.from_yaml(
        args.config,
        num_questions=args.num_questions,
        alpha=args.alpha,
        seed=args.seed,
        output_dir=args.output,
        hub=args.hub,
    )
    stats = run_synthesis(cfg)
    print(
        f"{stats['num_questions']} questions in {cfg.output_dir}/dataset: rare {stats['rare_ratio']:.1%} "
        f"(alpha {cfg.alpha}); acceptance {stats['acceptance']}; rejections {stats['rejections']}"
    )
    if stats.get("published"):
        print(f"Published as {stats['published']}")
    return 0


def _label(args: argparse.Namespace) -> int:
    from medssr_hub.labeling.label import LabelConfig, run_labeling

    cfg = LabelConfig.from_yaml(
        args.config, input=args.input, revision=args.revision, output_dir=args.output, hub=args.hub
    )
    stats = run_labeling(cfg)
    accuracy = stats.get("label_accuracy")
    print(
        f"{stats['questions']} questions labeled by majority of {cfg.n}: kept {stats['kept']} in band {list(cfg.band)}, "
        f"discarded {stats['discarded']}; mean agreement {stats['mean_agreement']:.2f}"
        + (
            f"; label accuracy {accuracy:.1%} on {stats['reference_questions']} questions with keys"
            if accuracy is not None
            else ""
        )
    )
    print(f"Results in {cfg.output_dir}/dataset (data/, stats.json, plots/labeling.png)")
    if stats.get("published"):
        print(f"Published as {stats['published']}")
    return 0


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _evaluate(args: argparse.Namespace) -> int:
    from medssr_hub.evaluation.evaluate import EvalConfig, run_evaluation
    from medssr_hub.evaluation.leaderboard import render_markdown

    paths = dict(p.split("=", 1) for p in args.benchmark_path or [])
    cfg = EvalConfig.from_yaml(
        args.config,
        model=args.model,
        revision=args.revision,
        label=args.label,
        benchmarks=args.benchmarks,
        max_items=args.max_items,
        num_samples=args.num_samples,
        max_tokens=args.max_tokens,
        mode=args.mode,
        engine=args.engine,
        recovery=args.recovery,
        chat=args.chat,
        batch_size=args.batch_size,
        output_dir=args.output,
        hub=args.hub,
    )
    if paths:
        cfg.benchmark_paths = {**cfg.benchmark_paths, **paths}
    results = run_evaluation(cfg)
    print(render_markdown([results]))
    for why in results["unavailable"].values():
        print(f"not run: {why}", file=sys.stderr)
    print(f"Results in {cfg.output_dir}/ (results.json, results.md, details/*.parquet)")
    return 0


def _leaderboard(args: argparse.Namespace) -> int:
    from medssr_hub.evaluation.leaderboard import load_result, push_leaderboard, write_leaderboard

    results = [load_result(p) for p in args.results]
    files = write_leaderboard(results, args.output)
    print(files["md"].read_text())
    print("Wrote " + ", ".join(str(f) for f in files.values()))
    if args.push:
        result = push_leaderboard(results, files, args.push, args.version, hub=args.hub)
        print(f"Published {result.repo_id}@{result.version} ({result.location})")
    return 0


def _rare_ratio(args: argparse.Namespace) -> int:
    from medssr_hub.records import load_records
    from medssr_hub.synthesis.catalog import RareDiseaseCatalog
    from medssr_hub.synthesis.rare_ratio import RareDiseaseMatcher, rare_ratio

    catalog = RareDiseaseCatalog(extra=args.catalog or [])
    matcher = RareDiseaseMatcher(catalog)
    for dataset in args.datasets:
        records, _ = load_records(dataset, revision=args.revision, hub=args.hub)
        result = rare_ratio(records, matcher)
        print(f"{dataset}: {result.rare}/{result.total} questions name a rare disease = {result.ratio:.1%}")
        for qid, ids in result.examples.items():
            print(f"  e.g. {qid}: {', '.join(catalog.by_id[i].name for i in ids)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medssr-hub", description=__doc__)
    parser.add_argument("--version", action="version", version=f"medssr-hub {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ...")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the main job on the embedded default model")
    demo.add_argument(
        "config", nargs="?", default=None, help="YAML config (default: recipes/demo.yaml values)"
    )
    demo.add_argument("--model", help="'embedded', a local folder or a Hub model id")
    demo.add_argument("--items-per-benchmark", type=int)
    demo.add_argument("--num-samples", type=int)
    demo.add_argument("--max-tokens", type=int)
    demo.add_argument("--batch-size", type=int, help="sequences per forward pass")
    demo.add_argument("--benchmarks-dir", help="folder of MedSSR-format JSON files")
    demo.add_argument("--output", help="output folder")
    demo.add_argument("--stage1-steps", type=int, help="stage 1 GRPO steps (0: skip the training step)")
    demo.add_argument("--hub", help="where to publish: a local hub folder, 'hf', or an http(s) endpoint")
    demo.set_defaults(func=_demo)

    hub_help = "a local hub folder, 'hf' (the Hub at HF_ENDPOINT), or an http(s) endpoint; default: local hub"
    pub = sub.add_parser("publish", help="publish a folder as an immutable version of a Hub repo")
    pub.add_argument("path")
    pub.add_argument("--repo-id", required=True)
    pub.add_argument("--version", required=True, help="vX.Y.Z")
    pub.add_argument("--repo-type", default="dataset", choices=["dataset", "model"])
    pub.add_argument("--hub", help=hub_help)
    pub.add_argument("--private", action="store_true")
    pub.add_argument("--branch", help="commit to this branch instead of main")
    pub.add_argument("--message", help="commit message")
    pub.set_defaults(func=_publish)

    pull = sub.add_parser("pull", help="download a repo at a revision (tag, branch or commit)")
    pull.add_argument("repo_id")
    pull.add_argument("--revision", default="main")
    pull.add_argument("--repo-type", default="dataset", choices=["dataset", "model"])
    pull.add_argument("--hub", help=hub_help)
    pull.add_argument("--output", help="copy the files here (default: print where they are)")
    pull.set_defaults(func=_pull)

    syn = sub.add_parser("synthesize", help="knowledge-enhanced question synthesis (rho < alpha injection)")
    syn.add_argument("config", help="YAML config, e.g. recipes/synthesis/config_demo.yaml")
    syn.add_argument("--num-questions", type=int)
    syn.add_argument("--alpha", type=float)
    syn.add_argument("--seed", type=int)
    syn.add_argument("--output", help="output folder")
    syn.add_argument("--hub", help=hub_help)
    syn.set_defaults(func=_synthesize)

    lab = sub.add_parser("label", help="pseudo-labels by majority vote of the policy's answers")
    lab.add_argument("config", help="YAML config, e.g. recipes/labeling/config_demo.yaml")
    lab.add_argument("--input", help="synthetic dataset: folder, file or dataset repo id")
    lab.add_argument("--revision", help="tag, branch or commit of a dataset repo")
    lab.add_argument("--output", help="output folder")
    lab.add_argument("--hub", help=hub_help)
    lab.set_defaults(func=_label)

    ev = sub.add_parser("evaluate", help="score a model on the benchmarks with the paper's protocol")
    ev.add_argument("--config", help="YAML config, e.g. recipes/evaluation/config_demo.yaml")
    ev.add_argument("--model", help="'embedded' (default), a folder, or a model repo id")
    ev.add_argument("--revision", help="tag, branch or commit of a model repo")
    ev.add_argument("--label", help="row name on leaderboards (default: model@revision)")
    ev.add_argument("--benchmarks", help="all | NAME,NAME | PATH.json,... (default: all)")
    ev.add_argument(
        "--benchmark-path", action="append", help="NAME=PATH: where a benchmark's data is (repeatable)"
    )
    ev.add_argument("--max-items", type=int, help="first K items of each benchmark")
    ev.add_argument("--num-samples", type=int, help="samples per item (paper: 4)")
    ev.add_argument("--max-tokens", type=int, help="max new tokens (paper: 2048)")
    ev.add_argument("--mode", choices=["generative", "loglikelihood"])
    ev.add_argument("--engine", choices=["medssr", "lighteval"], help="who generates (default medssr)")
    ev.add_argument(
        "--recovery", type=_bool, help="constrained second pass for unparseable answers (default true)"
    )
    ev.add_argument(
        "--chat",
        type=_bool,
        help="true: chat template; false: base-model template",
    )
    ev.add_argument("--batch-size", type=int, help="sequences per forward pass")
    ev.add_argument("--output", help="output folder (default outputs/eval)")
    ev.add_argument("--hub", help=hub_help)
    ev.set_defaults(func=_evaluate)

    lb = sub.add_parser("leaderboard", help="join evaluation results into md/csv/json tables and a chart")
    lb.add_argument("results", nargs="+", help="results.json files or evaluation output folders")
    lb.add_argument("--output", required=True, help="folder for leaderboard.{md,csv,json,png}")
    lb.add_argument("--push", metavar="REPO_ID", help="publish results and per-item details as this dataset")
    lb.add_argument("--version", default="v0.1.0", help="version tag of the published dataset")
    lb.add_argument("--hub", help=hub_help)
    lb.set_defaults(func=_leaderboard)

    rr = sub.add_parser("rare-ratio", help="share of questions that name a rare (ORPHANET) disease")
    rr.add_argument("datasets", nargs="+", help="files, folders or dataset repo ids")
    rr.add_argument("--revision")
    rr.add_argument("--hub", help=hub_help)
    rr.add_argument("--catalog", action="append", help="extra catalogue JSONL (repeatable)")
    rr.set_defaults(func=_rare_ratio)

    em = sub.add_parser("embedded-model", help="convert the embedded SmolLM2 GGUF once and print its folder")
    em.set_defaults(func=_embedded_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from medssr_hub.utils import setup_logging

    setup_logging(args.log_level)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; finished work is on disk and a rerun resumes from it", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as e:
        print(f"medssr-hub: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
