"""The benchmarks as a static lighteval custom-tasks module, for lighteval's own command line.

    medssr-hub lighteval accelerate MODEL_ARGS "medqa_base|0"

(`vllm` and `endpoint` take the same tasks; `medssr-hub lighteval` is lighteval's own CLI with this module
as `--custom-tasks` and the workarounds of `lighteval_tasks`: the plain `lighteval` command fails in 0.13
before it reads a custom module, see docs/evaluation.md.) Tasks are named `task|few_shot`, the form
lighteval 0.13 documents (`suite|task|few_shot` still works, with its deprecation warning). `TASKS_TABLE`
holds one task per benchmark: its local file where one is found, as `medssr-hub evaluate` reads it
(`$MEDSSR_BENCHMARKS_DIR`, else ../shared/benchmarks, else the shipped samples; offline), else its Hub
dataset, read at the registry's revision through its column mapping, as huggingface/open-r1's
`src/open_r1/evaluate.py` does for its tasks:

- `<name>`: chat models. The query is the question; the official system prompt goes in the model
  config (`system_prompt:` in a model YAML, as in recipes/lighteval/chat_model.yaml);
- `<name>_base`: base models, the official raw chain-of-thought template as plain text (pass
  `override_chat_template: false` for a base model that ships a chat template).

A benchmark read from several Hub configs (MMLU's six medical subjects) has one task per config,
`mmlu_medical:anatomy`, ..., which lighteval runs together as `mmlu_medical`.

The metric, `medssr_acc`, is the share of the samples whose first-pass letter (our extraction rule,
official by default) is the gold one, as `medssr-hub evaluate` computes before its recovery pass.
lighteval metrics cannot generate, so this route has no constrained second pass: an unparseable answer
counts as wrong. `medssr-hub evaluate` runs the whole protocol. Settings, read at import:

- MEDSSR_LIGHTEVAL_SAMPLES: samples per question (default 4, the paper's);
- MEDSSR_LIGHTEVAL_EXTRACTION: official (default) or lenient;
- MEDSSR_LIGHTEVAL_MODEL_FAMILY: the model's name, for the official rule's family forms (Gemma's bold);
- MEDSSR_LIGHTEVAL_DATA: auto (default: local files where found, else the Hub), local or hub;
- MEDSSR_LIGHTEVAL_MAX_TOKENS: the tasks' generation size (default 2048, the paper's). lighteval 0.13's
  transformers backend generates the task's size whatever `max_new_tokens` the model config sets.

Task names avoid lighteval's built-in ones (its registry refuses a clash): `mmlu` is its own.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

from lighteval.tasks.lighteval_task import LightevalTaskConfig
from lighteval.tasks.requests import Doc

from medssr_hub.answers import READING, Extraction
from medssr_hub.evaluation.lighteval_tasks import make_metric, record_doc
from medssr_hub.evaluation.registry import BENCHMARKS, Benchmark
from medssr_hub.paths import benchmarks_dir, cache_dir
from medssr_hub.records import LoadReport, normalize_row

logger = logging.getLogger(__name__)

SETTINGS = "MEDSSR_LIGHTEVAL_"
NUM_SAMPLES = int(os.environ.get(f"{SETTINGS}SAMPLES", "4"))
# The first pass's one family rule (Gemma's bold form), keyed on this name as the official script keys it.
EXTRACTION = Extraction(
    os.environ.get(f"{SETTINGS}EXTRACTION", READING),
    os.environ.get(f"{SETTINGS}MODEL_FAMILY", ""),
    recovery_rule="script_path_string",
)
GENERATION_SIZE = int(os.environ.get(f"{SETTINGS}MAX_TOKENS", "2048"))  # recipes/evaluation/config_paper.yaml
# Where a task's questions come from: auto (a local file where one is found, else the Hub dataset), local
# (local files only) or hub (the Hub datasets only).
DATA = os.environ.get(f"{SETTINGS}DATA", "auto")
if DATA not in ("auto", "local", "hub"):
    raise ValueError(f"{SETTINGS}DATA must be auto, local or hub, got {DATA!r}")
TASK_NAMES = {"mmlu": "mmlu_medical"}  # lighteval's own `mmlu:<subject>` tasks would clash
REJECTED = LoadReport(source="lighteval tasks")  # rows a column mapping cannot read, counted by reason


def prompt_function(bench: Benchmark, chat: bool):
    """Hub row -> lighteval Doc through the registry's column mapping; None (skipped) for a bad row."""

    def prompt(line: dict[str, Any], task_name: str = "") -> Doc | None:
        row = bench.columns.apply(line) if bench.columns else line
        report = LoadReport(source=task_name)
        record = normalize_row(row, REJECTED.kept + REJECTED.rejected.total(), bench.name, report)
        if record is not None and record.answer is None:
            report.reject("no_answer", record.id)
            record = None
        if record is None:
            ((reason, (label,)),) = report.examples.items()
            REJECTED.reject(reason, f"{task_name} {label}")
            logger.warning(
                "%s: skipped row %s (%s); %d skipped so far",
                task_name,
                label,
                reason,
                REJECTED.rejected.total(),
            )
            return None
        REJECTED.kept += 1
        return record_doc(record, chat, task_name)

    return prompt


def local_folder(bench: Benchmark, data: str = DATA) -> str | None:
    """A folder that holds the benchmark's local file (`$MEDSSR_BENCHMARKS_DIR/<file>`, else
    ../shared/benchmarks, else the samples shipped in the package) as `test.json`, linked: lighteval reads a
    task with `datasets.load_dataset(folder)`, which names a split by its file. None where there is none,
    or where `MEDSSR_LIGHTEVAL_DATA=hub`."""
    if data == "hub":
        return None
    source = benchmarks_dir() / bench.file
    if not source.is_file():
        return None
    staged = cache_dir() / "lighteval" / bench.name
    staged.mkdir(parents=True, exist_ok=True)
    link = staged / "test.json"
    if not (link.is_symlink() and link.resolve() == source.resolve()):
        fresh = staged / f".test.json.{os.getpid()}"
        fresh.unlink(missing_ok=True)
        fresh.symlink_to(source.resolve())
        os.replace(fresh, link)  # atomic: a concurrent reader sees the old link or the new one
    return str(staged)


def task_configs(
    num_samples: int = NUM_SAMPLES, extraction: Extraction = EXTRACTION, data: str = DATA
) -> list[LightevalTaskConfig]:
    metric = make_metric(num_samples, extraction)
    table = []
    for bench in BENCHMARKS.values():
        folder = local_folder(bench, data)
        if folder is not None:  # the local file, in the MedSSR evaluation format: no column mapping
            bench = replace(bench, hub_id=folder, revision=None, subsets=(), split="test", columns=None)
        if bench.hub_id is None or data == "local" and folder is None:
            continue
        split = bench.split or "test"  # RareDis-Sub: its split could not be seen offline; test assumed
        subsets = bench.subsets or ("default",)
        for chat in (True, False):
            name = TASK_NAMES.get(bench.name, bench.name) + ("" if chat else "_base")
            for subset in subsets:
                table.append(
                    LightevalTaskConfig(
                        name=f"{name}:{subset}" if len(subsets) > 1 else name,
                        prompt_function=prompt_function(bench, chat),
                        hf_repo=bench.hub_id,
                        hf_subset=subset,
                        hf_revision=bench.revision,
                        hf_avail_splits=[split],
                        evaluation_splits=[split],
                        few_shots_split=None,
                        metrics=[metric],
                        generation_size=GENERATION_SIZE,
                        stop_sequence=[],
                    )
                )
    return table


TASKS_TABLE = task_configs()
