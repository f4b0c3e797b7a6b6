"""`medssr-hub`: the command line. Each subcommand is a thin wrapper over a stage's Python API.

Every stage subcommand (synthesize, label, stage1, stage2, sft, evaluate, leaderboard, demo, ablation) reads one
config dataclass through `TrlParser`: `--config FILE.yaml`, then any field as `--field value`, exactly
as `python recipes/<stage>.py --config FILE.yaml` does. `--help` after a subcommand lists its fields.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import traceback
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path

from tqdm.auto import tqdm

from medssr_hub import __version__
from medssr_hub.commands import STAGES, TRAINING, stage_config
from medssr_hub.config import load_config
from medssr_hub.errors import ConfigError, MedSSRError
from medssr_hub.hub import open_hub, publish
from medssr_hub.paths import package_data
from medssr_hub.utils import setup_logging

HUB_HELP = "a local hub folder, 'hf' (the Hub at HF_ENDPOINT), or an http(s) endpoint; default: local hub"


def _publish(args: argparse.Namespace) -> int:
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


def _hub_serve(args: argparse.Namespace) -> int:
    from medssr_hub.hub.publishing import default_hub_root
    from medssr_hub.hub.serve import serve

    serve(args.root or default_hub_root(), args.host, args.port)
    return 0


def _pull(args: argparse.Namespace) -> int:
    print(open_hub(args.hub).pull(args.repo_id, args.revision, repo_type=args.repo_type, output=args.output))
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


def _publish_metric(args: argparse.Namespace) -> int:
    """The `medssr_accuracy` metric module and its card, as a Space that `evaluate.load(repo_id)` reads.

    evaluate loads `<name>.py` from Space `ORG/<name>`: the script is staged under the Space's name."""
    name = args.repo_id.split("/")[-1]
    if not name.isidentifier():
        raise ConfigError(f"--repo-id {args.repo_id}: the Space name must be a Python identifier")
    source = package_data("metrics", "medssr_accuracy")
    with tempfile.TemporaryDirectory() as staging:
        for path in source.iterdir():
            if path.is_file():
                target = f"{name}.py" if path.name == "medssr_accuracy.py" else path.name
                shutil.copyfile(path, Path(staging) / target)
        result = publish(staging, args.repo_id, args.version, repo_type="space", hub=args.hub)
    print(f"metric {result.repo_id}@{result.version} at {result.location}: evaluate.load({result.repo_id!r})")
    return 0


def _space(args: argparse.Namespace) -> int:
    from medssr_hub.evaluation.space import serve  # imports gradio: only when asked

    serve(args.sources, hub=args.hub, host=args.host, port=args.port)
    return 0


def _raredis_subset(args: argparse.Namespace) -> int:
    from medssr_hub.evaluation.registry import load_benchmark
    from medssr_hub.synthesis.catalog import RareDiseaseCatalog
    from medssr_hub.synthesis.raredis_subset import SUBSET_FILE, SUBSET_NAME, build_subset

    catalog = RareDiseaseCatalog(extra=args.catalog or [])
    benchmarks = []
    for item in args.benchmarks:
        name, records, source = load_benchmark(item, hub=args.hub)
        benchmarks.append((name, records))
        print(f"{name}: {len(records)} items from {source}")
    stats = build_subset(benchmarks, args.output, catalog)
    print(
        f"{stats['items']} items name a catalogue rare disease ({stats['selected']}): "
        f"{Path(args.output) / SUBSET_FILE}; score it with --benchmark_paths "
        f'\'{{"{SUBSET_NAME}": "{Path(args.output) / SUBSET_FILE}"}}\' --benchmarks {SUBSET_NAME}'
    )
    return 0


def _embedded_model(args: argparse.Namespace) -> int:
    from medssr_hub.modeling import ensure_embedded_model

    print(ensure_embedded_model())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medssr-hub", description=__doc__)
    parser.add_argument("--version", action="version", version=f"medssr-hub {__version__}")
    parser.add_argument(
        "--log-level", "--log_level", dest="log_level", default="INFO",
        help="DEBUG (also: tracebacks of errors), INFO, WARNING, ...",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, _, help_text) in STAGES.items():
        sub.add_parser(name, help=help_text, add_help=False)
    for name, (_, help_text) in TRAINING.items():
        sub.add_parser(name, help=help_text, add_help=False)

    pub = sub.add_parser("publish", help="publish a folder as an immutable version of a Hub repo")
    pub.add_argument("path")
    pub.add_argument("--repo-id", required=True)
    pub.add_argument("--version", required=True, help="vX.Y.Z")
    pub.add_argument("--repo-type", default="dataset", choices=["dataset", "model", "space"])
    pub.add_argument("--hub", help=HUB_HELP)
    pub.add_argument("--private", action="store_true")
    pub.add_argument("--branch", help="commit to this branch instead of main")
    pub.add_argument("--message", help="commit message")
    pub.set_defaults(func=_publish)

    pull = sub.add_parser("pull", help="download a repo at a revision (tag, branch or commit)")
    pull.add_argument("repo_id")
    pull.add_argument("--revision", default="main")
    pull.add_argument("--repo-type", default="dataset", choices=["dataset", "model"])
    pull.add_argument("--hub", help=HUB_HELP)
    pull.add_argument("--output", help="copy the files here (default: print where they are)")
    pull.set_defaults(func=_pull)

    rr = sub.add_parser("rare-ratio", help="share of questions that name a rare (ORPHANET) disease")
    rr.add_argument("datasets", nargs="+", help="files, folders or dataset repo ids")
    rr.add_argument("--revision")
    rr.add_argument("--hub", help=HUB_HELP)
    rr.add_argument("--catalog", action="append", help="extra catalogue JSONL (repeatable)")
    rr.set_defaults(func=_rare_ratio)

    pm = sub.add_parser("publish-metric", help="publish the medssr_accuracy `evaluate` metric as a Space")
    pm.add_argument("--repo-id", required=True, help="ORG/NAME of the Space")
    pm.add_argument("--version", required=True, help="vX.Y.Z")
    pm.add_argument("--hub", help=HUB_HELP)
    pm.set_defaults(func=_publish_metric)

    rs = sub.add_parser(
        "raredis-subset",
        help="the benchmark items that name a catalogue rare disease (an offline rare-disease row)",
    )
    rs.add_argument("benchmarks", nargs="+", help="benchmark names (medqa, ...) or MCQ files")
    rs.add_argument(
        "--output", required=True, help="folder for the subset file (raredis_catalogue.json) and stats.json"
    )
    rs.add_argument("--catalog", action="append", help="extra catalogue JSONL (repeatable)")
    rs.add_argument("--hub", help=HUB_HELP)
    rs.set_defaults(func=_raredis_subset)

    sub.add_parser(
        "lighteval",
        add_help=False,
        help="lighteval's own command line with our tasks (`medssr-hub lighteval accelerate MODEL_ARGS "
        "'medqa_base|0'`), its offline and huggingface_hub 1.x import failures worked around",
    )
    sp = sub.add_parser(
        "space", help="serve the leaderboard app (the published Space) locally over published leaderboards"
    )
    sp.add_argument("sources", nargs="+", help="published leaderboards ORG/NAME@version (merged), or folders")
    sp.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    sp.add_argument("--port", type=int, default=7860, help="port to listen on")
    sp.add_argument("--hub", help=HUB_HELP)
    sp.set_defaults(func=_space)

    hs = sub.add_parser(
        "hub-serve",
        help="serve the local hub read-only over the Hub's HTTP API: with HF_ENDPOINT set to it, "
        "load_dataset, snapshot_download, `hf download` and from_pretrained read our repos",
    )
    hs.add_argument("--root", help="the local hub folder (default: $MEDSSR_HUB_ROOT, else the cache's hub/)")
    hs.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    hs.add_argument("--port", type=int, default=8090, help="port to listen on")
    hs.set_defaults(func=_hub_serve)

    em = sub.add_parser("embedded-model", help="convert the embedded SmolLM2 GGUF once and print its folder")
    em.set_defaults(func=_embedded_model)
    return parser


def _lighteval_args(argv: Sequence[str]) -> list[str] | None:
    """What follows `lighteval` when it is the command: lighteval's own arguments, passed on verbatim."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in ("--log-level", "--log_level") else 1
    return list(argv[i + 1 :]) if i < len(argv) and argv[i] == "lighteval" else None


def run_command(argv: Sequence[str]) -> int:
    lighteval_args = _lighteval_args(argv)
    if lighteval_args is not None:
        from medssr_hub.evaluation.lighteval_tasks import lighteval_cli  # imports lighteval: only when asked

        return lighteval_cli(lighteval_args)
    args, rest = build_parser().parse_known_args(argv)
    setup_logging(args.log_level)
    prog = f"medssr-hub {args.command}"
    if args.command in STAGES:
        cfg = load_config(stage_config(args.command), rest, prog=prog)
        return STAGES[args.command][1](cfg)
    if args.command in TRAINING:
        from medssr_hub.runs.checkpoint_eval import checkpoint_callbacks
        from medssr_hub.training.vllm_sync import keep_vllm_out

        module = import_module(TRAINING[args.command][0])
        script_args, training_args, model_args = module.parse_args(rest, prog=prog)
        keep_vllm_out(training_args)  # before TRL's trainer is imported; this process only trains
        evaluation = checkpoint_callbacks(script_args, training_args)  # eval_benchmarks: scored checkpoints
        module.main(script_args, training_args, model_args, callbacks=evaluation)
        return 0
    if rest:
        raise ConfigError(f"unrecognized arguments: {' '.join(rest)}")
    return args.func(args)


def _log_level(argv: Sequence[str]) -> str:
    """The --log-level given before the command (upper-cased), else INFO."""
    for i, arg in enumerate(argv):
        if arg in ("--log-level", "--log_level") and i + 1 < len(argv):
            return argv[i + 1].upper()
        if arg.startswith(("--log-level=", "--log_level=")):
            return arg.split("=", 1)[1].upper()
        if not arg.startswith("-"):
            break
    return "INFO"


def unshadow_libraries() -> None:
    """`python recipes/evaluate.py` (or any launcher there) puts recipes/ first on sys.path, where the
    launcher evaluate.py stands in for the `evaluate` library the scorer imports: take that folder off."""
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if script is not None and (script.parent / "evaluate.py").is_file() and "evaluate" not in sys.modules:
        sys.path[:] = [p for p in sys.path if not p or Path(p).resolve() != script.parent]


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 on success, 2 with one line naming the problem on bad input, 130 when interrupted; a bug
    raises (its traceback)."""
    unshadow_libraries()
    argv_list = list(sys.argv[1:] if argv is None else argv)
    try:
        return run_command(argv_list)
    except KeyboardInterrupt:
        print("interrupted; finished work is on disk and a rerun resumes from it", file=sys.stderr)
        return 130
    except (MedSSRError, OSError) as e:
        # The project's own errors (bad input, a failing server or hub) and the file system's, which name
        # their path. Anything else is a bug in this code or a library: its traceback is the report.
        message = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        for bar in list(getattr(tqdm, "_instances", ())):  # end the line of a progress bar cut short
            bar.close()
        if _log_level(argv_list) == "DEBUG":  # --log-level debug: the traceback, for any error
            traceback.print_exc(file=sys.stderr)
        print(
            f"medssr-hub: error: {message.splitlines()[0] if message else type(e).__name__}", file=sys.stderr
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
