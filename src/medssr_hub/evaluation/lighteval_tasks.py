"""The benchmarks as lighteval custom tasks, run through lighteval's Python `Pipeline`.

Each benchmark becomes a `LightevalTaskConfig` whose prompt function builds exactly our answer prompt
(the official system prompt + the question for chat models, the raw CoT template for base models) and
whose metric reads letters by the run's extraction rule (`medssr_hub.answers.Extraction`: official or
lenient) averaged over the samples. lighteval generates (its transformers backend; its vLLM backend
is refused, see LIGHTEVAL_VLLM_UNSUPPORTED); its generations are then written as our
`generations/<bench>.jsonl`, so the same `Evaluator` scores them (recovery pass, mean and std over
samples): results through lighteval and re-scored from saved generations are the same by construction,
and a test checks lighteval's own metric against ours.

Frictions with lighteval 0.13 handled here (`lighteval_workarounds`, also used by `lighteval_cli`,
which runs lighteval's own command line with the static suite in `lighteval_suite`):
- it loads task data with `datasets.load_dataset(hf_repo)`, so each benchmark is written as a local
  dataset folder first (our loaders read files, folders and pinned Hub ids);
- its task registry imports every built-in task module, and two fail at import here (a download from
  GitHub offline; a removed huggingface_hub argument): the registry loads our module only;
- its prediction cache is keyed on the model config, not the weights (two checkpoints at one path
  would share predictions): it is disabled, our generation logs make runs resumable;
- it never sets `do_sample`, so with transformers 5 it would decode greedily: set from temperature;
- its details logger hashes strings with xxhash, which needs xxhash<4 (pinned in pyproject);
- importing its command line (`lighteval.__main__`) runs `logging.config.dictConfig` without
  `disable_existing_loggers=False`, which disables every logger created before it (ours too: later
  warnings of the same process were lost): `lighteval_cli` imports it with them kept enabled.
"""

from __future__ import annotations

import json
import logging
import re
import statistics
import sys
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medssr_hub.answers import BASE_TEMPLATE, SYSTEM_PROMPT, Extraction
from medssr_hub.generation import SamplingParams
from medssr_hub.modeling import model_type_of
from medssr_hub.records import MCQRecord, record_from_row
from medssr_hub.utils import atomic_write_jsonl

logger = logging.getLogger(__name__)
SUITE = "medssr"


class _NoCache:
    """Stands in for SampleCache while a Pipeline is built (no cache folder); replaced by None right after
    (a model whose `_cache` is None runs its @cached methods uncached)."""

    def __init__(self, config=None):
        pass

    def _init_registry(self, registry) -> None:
        pass


def _uncached(pipeline_init):
    def init(self, *args, **kwargs) -> None:
        pipeline_init(self, *args, **kwargs)
        self.model._cache = None

    return init


def _with_do_sample(to_transformers_dict):
    def wrapped(self) -> dict:
        args = to_transformers_dict(self)
        if self.temperature is not None and "do_sample" not in args:
            args["do_sample"] = self.temperature > 0
        return args

    return wrapped


@contextmanager
def lighteval_workarounds():
    """While lighteval builds and runs a Pipeline: our custom tasks only, no prediction cache, sampling on.

    - lighteval 0.13's Registry imports every built-in task module on creation (lighteval#1004). That is
      slow, and two modules fail at import here: tiny_benchmarks downloads a file from GitHub (offline:
      ConnectionError, open-r1#651), and an LLM-judge metric calls `HfApi.list_models(model_name=...)`,
      an argument huggingface_hub 1.0 removed (TypeError). Our tasks are all custom.
    - its prediction cache is keyed on the model config, not the weights (two checkpoints saved to one
      path would share predictions), and it lives under cache_dir/<model path>, i.e. inside the model
      folder for local paths. Our generation logs already make runs resumable, so it is disabled.
    - its transformers backend passes temperature/top_p/top_k but never `do_sample`, so with
      transformers 5 it decodes greedily and refuses more than one sample: set from the temperature.
    """
    import lighteval.models.transformers.transformers_model as tm
    from lighteval.models.model_input import GenerationParameters
    from lighteval.pipeline import Pipeline
    from lighteval.tasks.registry import Registry

    modules = [tm]
    original_loader = Registry.__dict__["load_all_task_configs"]
    original_caches = [m.SampleCache for m in modules]
    original_dict = GenerationParameters.to_transformers_dict
    original_init = Pipeline.__init__

    def load_custom_only(custom_tasks=None, load_multilingual=False):
        return Registry._extract_configs(Registry.create_custom_tasks_module(custom_tasks))

    Registry.load_all_task_configs = staticmethod(load_custom_only)
    GenerationParameters.to_transformers_dict = _with_do_sample(original_dict)
    Pipeline.__init__ = _uncached(original_init)
    for module in modules:
        module.SampleCache = _NoCache
    try:
        yield
    finally:
        Registry.load_all_task_configs = original_loader
        GenerationParameters.to_transformers_dict = original_dict
        Pipeline.__init__ = original_init
        for module, cache in zip(modules, original_caches, strict=True):
            module.SampleCache = cache


# lighteval 0.13's vLLM model requires vllm>=0.10.0,<0.10.2 and imports APIs that later vLLM releases removed
# (`vllm.transformers_utils.tokenizer`, lighteval#1002); under our vLLM pin it is a Mock that fails at use.
LIGHTEVAL_VLLM_UNSUPPORTED = (
    "lighteval 0.13's vLLM backend needs vllm<0.10.2 and calls APIs that later vLLM releases removed "
    "(huggingface/lighteval#1002); this project pins vLLM 0.30.0. Run the same protocol on vLLM with "
    "engine: medssr, backend: vllm (vLLM's offline engine, as the official script runs), or lighteval on "
    "transformers with engine: lighteval, backend: embedded"
)


# lighteval's commands that evaluate tasks (`lighteval tasks`, `baseline`, ... take no model).
LIGHTEVAL_BACKENDS = ("accelerate", "vllm", "endpoint", "sglang", "custom", "nanotron")
SUITE_MODULE = "medssr_hub.evaluation.lighteval_suite"


def _import_lighteval_app():
    """`lighteval.__main__.app`, with every logger that was enabled before its import still enabled."""
    enabled = [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.disabled
    ]
    from lighteval.__main__ import app

    for logger in enabled:
        logger.disabled = False
    return app


def lighteval_cli(argv: list[str]) -> int:
    """lighteval's own command line (`lighteval.__main__.app`), run with `lighteval_workarounds()` and
    our task suite as `--custom-tasks` unless another module is named: `medssr-hub lighteval ARGS` is
    `lighteval ARGS` with the defects above worked around."""
    import typer

    app = _import_lighteval_app()
    argv = list(argv)
    if argv and argv[0] == "vllm":
        print(f"medssr-hub: error: lighteval vllm: {LIGHTEVAL_VLLM_UNSUPPORTED}", file=sys.stderr)
        return 2
    if argv and argv[0] in LIGHTEVAL_BACKENDS and "--custom-tasks" not in argv:
        argv += ["--custom-tasks", SUITE_MODULE]
    with lighteval_workarounds():
        try:  # standalone: usage errors and --help print as lighteval prints them, then exit
            typer.main.get_command(app).main(args=argv, prog_name="medssr-hub lighteval")
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else int(e.code is not None)
    return 0


def make_metric(num_samples: int, extraction: Extraction):
    from lighteval.metrics.metrics_sample import SampleLevelComputation, SamplingMetric
    from lighteval.metrics.utils.metric_utils import SampleLevelMetric
    from lighteval.tasks.requests import SamplingMethod

    class LetterAccuracy(SamplingMetric, SampleLevelComputation):
        """Share of the k samples whose letter (read by the run's extraction rule) is the gold one.

        A SamplingMetric, so that lighteval generates `num_samples` samples per item.
        """

        def num_samples(self) -> int:
            return num_samples

        def compute(self, doc, model_response, **kwargs) -> float:
            letters, gold = doc.specific["letters"], doc.specific["gold"]
            texts = list(model_response.text)[:num_samples]
            return (
                statistics.fmean(extraction.first_pass(t, letters) == gold for t in texts) if texts else 0.0
            )

    return SampleLevelMetric(
        metric_name="medssr_acc",
        higher_is_better=True,
        category=SamplingMethod.GENERATIVE,
        sample_level_fn=LetterAccuracy(),
        corpus_level_fn=statistics.fmean,
    )


def record_doc(record: MCQRecord, chat: bool, task_name: str):
    """The lighteval Doc of one question: the official prompt (the question for chat models, whose system
    prompt is the model's; the raw CoT template for base models) and its gold letter."""
    from lighteval.tasks.requests import Doc

    question = record.prompt_text()
    return Doc(
        task_name=task_name,
        query=question if chat else BASE_TEMPLATE.format(question=question),
        choices=record.letters,
        gold_index=record.letters.index(record.answer),
        specific={"id": record.id, "letters": record.letters, "gold": record.answer},
    )


def make_prompt_fn(chat: bool):
    def prompt_fn(line: dict[str, Any], task_name: str = ""):
        return record_doc(record_from_row(json.loads(line["record"])), chat, task_name)

    return prompt_fn


def tasks_module(
    benchmarks: dict[str, list[MCQRecord]],
    data_dir: Path,
    chat: bool,
    num_samples: int,
    max_tokens: int,
    extraction: Extraction,
) -> types.ModuleType:
    """A module with TASKS_TABLE, as lighteval's registry expects of custom tasks."""
    from lighteval.tasks.lighteval_task import LightevalTaskConfig

    metric = make_metric(num_samples, extraction)
    table = []
    for name, records in benchmarks.items():
        folder = data_dir / name
        atomic_write_jsonl(
            folder / "test.jsonl", [{"id": r.id, "record": json.dumps(r.to_row())} for r in records]
        )
        table.append(
            LightevalTaskConfig(
                name=f"{SUITE}_{name}",  # prefixed: lighteval has its own medqa, pubmedqa, ...
                prompt_function=make_prompt_fn(chat),
                hf_repo=str(folder),
                hf_subset="default",
                hf_avail_splits=["test"],
                evaluation_splits=["test"],
                metrics=[metric],
                generation_size=max_tokens,
                stop_sequence=[],
            )
        )
    module = types.ModuleType("medssr_lighteval_tasks")
    module.TASKS_TABLE = table
    return module


def run_lighteval(
    cfg,
    model_path: str,
    benchmarks: dict[str, list[MCQRecord]],
    out: Path,
    hashes: dict[str, dict[str, str]],
) -> dict[str, Any]:
    """Generate with lighteval's Pipeline; write our generation logs (each item with its resume identity,
    `hashes[benchmark][id]`); return lighteval's own scores."""
    import torch
    from lighteval.logging.evaluation_tracker import EvaluationTracker
    from lighteval.models.model_input import GenerationParameters
    from lighteval.models.transformers.transformers_model import TransformersModelConfig
    from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters

    model_type = model_type_of(model_path) if cfg.recovery_rule == "family" else None
    extraction = Extraction(cfg.extraction, cfg.path_string, cfg.recovery_rule, model_type)
    module = tasks_module(
        benchmarks, out / "lighteval" / "data", cfg.chat, cfg.num_samples, cfg.max_tokens, extraction
    )
    params = SamplingParams.of(cfg)  # as our engine samples; lighteval takes its n from the task
    generation = GenerationParameters(
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k,
        max_new_tokens=params.max_tokens,
        seed=params.seed,
    )
    common = {
        "model_name": model_path,
        "override_chat_template": cfg.chat,
        "system_prompt": SYSTEM_PROMPT if cfg.chat else None,
        "generation_parameters": generation,
    }
    # lighteval on transformers (backend: embedded); its vLLM backend is refused by EvalConfig (above).
    model_config = TransformersModelConfig(
        **common,
        batch_size=cfg.batch_size,
        device="cuda" if torch.cuda.is_available() else "cpu",
        dtype="float32",
    )
    with lighteval_workarounds():
        pipeline = Pipeline(
            tasks=",".join(f"{SUITE}_{name}|0" for name in benchmarks),
            pipeline_parameters=PipelineParameters(
                launcher_type=ParallelismManager.NONE, custom_tasks_directory=module, max_samples=None
            ),
            evaluation_tracker=EvaluationTracker(output_dir=str(out / "lighteval"), save_details=False),
            model_config=model_config,
        )
        pipeline.evaluate()
    scores = {}
    for task, details in pipeline.get_details().items():
        name = re.split(r"[|:]", task)[0].removeprefix(f"{SUITE}_")
        rows = []
        for detail in details:
            doc, response = detail.doc, detail.model_response
            item = doc.specific["id"]
            rows.append(
                {"id": item, "sha": hashes[name][item], "samples": list(response.text)[: cfg.num_samples]}
            )
        atomic_write_jsonl(out / "generations" / f"{name}.jsonl", rows)
    for task, metrics in pipeline.get_results()["results"].items():
        if task != "all":
            scores[re.split(r"[|:]", task)[0].removeprefix(f"{SUITE}_")] = metrics.get("medssr_acc")
    return scores
