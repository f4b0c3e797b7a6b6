"""Script arguments shared by the GRPO and SFT recipes (parsed with TRL's `TrlParser`, YAML + CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ScriptArguments

from medssr_hub.answers import EXTRACTIONS, READING, RECOVERY_RULES
from medssr_hub.config import JsonDict
from medssr_hub.errors import InputError

TARGETS = ("label", "answer", "vote", "key")


@dataclass
class MedSSRScriptArguments(ScriptArguments):
    """What TRL's config does not cover: where the questions come from, prompting, rewards, publishing.

    `dataset_name` is a dataset repo id (local hub first, then the Hub; pin `dataset_revision`), a
    published folder, or a file in the MCQ record schema / MedSSR evaluation format.
    """

    stage: str = field(default="stage1", metadata={"help": "stage1 | stage2 | sft: names the run in cards"})
    dataset_revision: str | None = field(default=None, metadata={"help": "tag, branch or commit to pin"})
    dataset_columns: JsonDict = field(
        default_factory=JsonDict,
        metadata={
            "help": "how another dataset's columns map onto a question (columns.ColumnMap fields, e.g. "
            '{"question": "prompt", "options": null, "label": "reward_model.ground_truth"}); known '
            "released sets (training.data.DATASET_COLUMNS) are mapped without it"
        },
    )
    target: str = field(
        default="label",
        metadata={
            "help": "what the accuracy reward rewards against: label (stage 1's offline pseudo-labels, "
            "MedSSR), answer (gold, stage 2), vote (each GRPO group's own majority, online, as TTRL) or key "
            "(the construction keys of keyed vignettes: an oracle)"
        },
    )
    chat: bool | None = field(
        default=None,
        metadata={
            "help": "required: true = chat template (instruct models), false = raw CoT template (base)"
        },
    )
    stop_at_next_question: bool = field(
        default=True,
        metadata={
            "help": "base template (chat: false): a rollout ends at the next '\\nQuestion:' it writes, and "
            "counts as finished, not truncated (vLLM `stop`, transformers stop strings); chat: true ignores it"
        },
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "use the first K questions"})
    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy"],
        metadata={"help": "names from the reward registry (accuracy, format, length) or dotted import paths"},
    )
    extraction: str = field(
        default=READING,
        metadata={
            "help": "how the accuracy reward reads a completion's letter: official (the evaluation's rule, "
            "tdlhl/MedSSR's script: 'The answer is X', case-sensitive first) or lenient (also 'Answer: C', "
            "'The correct answer is D', bold and boxed forms, offered letters only)"
        },
    )
    recovery_rule: str = field(
        default="family",
        metadata={
            "help": "official recovery pass: family (ids and length by the model's model_type) or "
            "script_path_string (by the model's path, as the official script)"
        },
    )
    recovery: bool = field(
        default=False,
        metadata={"help": "run the constrained second pass (the policy, 1 token) on unparseable completions"},
    )
    recovered_credit: float = field(
        default=0.0, metadata={"help": "accuracy reward for a correct letter that needed the recovery pass"}
    )
    length_cache: int = field(
        default=64, metadata={"help": "length reward: soft penalty over the last N tokens before the limit"}
    )
    reasoning_column: str = field(default="reasoning", metadata={"help": "SFT: the reasoning column"})
    hub: str | None = field(default=None, metadata={"help": "local hub folder (default), 'hf' or a URL"})
    publish_repo: str | None = field(default=None, metadata={"help": "model repo id for the final model"})
    publish_version: str = field(default="v0.1.0", metadata={"help": "version tag of the final model"})
    push_checkpoints: bool = field(
        default=False, metadata={"help": "publish each saved checkpoint to its own branch checkpoint-<step>"}
    )
    merge_lora: bool = field(default=True, metadata={"help": "publish LoRA runs merged into full weights"})
    evaluation: str | None = field(
        default=None, metadata={"help": "a markdown results table (e.g. a leaderboard) for the model card"}
    )
    data_description: str | None = field(
        default=None, metadata={"help": "what the training data is, in a sentence, for the model card"}
    )
    decontaminate: list[str] | None = field(
        default=None,
        metadata={
            "help": "evaluation sets the training data must not overlap (13-grams); default: every "
            "benchmark file in $MEDSSR_BENCHMARKS_DIR"
        },
    )
    allow_eval_overlap: bool = field(
        default=False,
        metadata={"help": "train even on questions that share 13-grams with the evaluation sets (counted)"},
    )
    check_disk: bool = field(
        default=True,
        metadata={
            "help": "before training, estimate what the run writes (kept checkpoints with optimizer state, "
            "the final model, local-hub copies) and stop if a disk lacks the room"
        },
    )
    check_memory: bool = field(
        default=True,
        metadata={
            "help": "before any model loads, refuse a full fine-tune that no process shards (DDP, one device) "
            "whose replica (16 bytes a parameter) exceeds a process's GPU, or its share of host memory on CPU"
        },
    )
    eval_benchmarks: list[str] | None = field(
        default=None,
        metadata={
            "help": "score every saved checkpoint on these benchmarks (names or files, as `evaluate "
            "--benchmarks`) before it is published: into the logs (eval/<benchmark>) and onto its card; "
            "the main process scores the model it holds (not with FSDP or ZeRO-3)"
        },
    )
    eval_max_items: int = field(
        default=16, metadata={"help": "evaluation during training: items per benchmark"}
    )
    eval_num_samples: int = field(
        default=1, metadata={"help": "evaluation during training: samples per item"}
    )
    eval_max_tokens: int | None = field(
        default=None,
        metadata={"help": "evaluation during training: new tokens per answer; null: max_completion_length"},
    )
    fresh_start: bool = field(
        default=False, metadata={"help": "ignore checkpoints in output_dir (by default a run resumes)"}
    )

    def __post_init__(self):
        if self.chat is None:
            raise InputError(
                "set `chat: true` (chat template, instruct models) or `chat: false` (raw chain-of-thought "
                "template, base models) in the config; it is never guessed from the model name"
            )
        if self.extraction not in EXTRACTIONS:
            raise InputError(f"extraction must be one of {', '.join(EXTRACTIONS)}, got {self.extraction!r}")
        if self.recovery_rule not in RECOVERY_RULES:
            raise InputError(
                f"recovery_rule must be one of {', '.join(RECOVERY_RULES)}, got {self.recovery_rule!r}"
            )
        if self.target not in TARGETS:
            raise InputError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.eval_max_items < 1 or self.eval_num_samples < 1:
            raise InputError("eval_max_items and eval_num_samples must be at least 1")
        if not self.dataset_name:
            raise InputError("dataset_name is required: a dataset repo id, a folder or a file")
