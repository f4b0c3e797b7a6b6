"""Evaluation during training: every saved checkpoint is scored on a small evaluation set, before it is
published, and the score goes into the training logs and onto the checkpoint's card.

Set `eval_benchmarks` (benchmark names or files, as `medssr-hub evaluate --benchmarks` takes them) in a
training config. At each save the main process scores the model it holds in memory (no reload) with the
evaluation stage's own `Evaluator`, on the first `eval_max_items` items with `eval_num_samples` samples,
into `checkpoint-<step>/evaluation/` (results.json, details, results.md). The publishing callback then puts
that table on the checkpoint's card (`hubsync.EVALUATION_FILE`). The other ranks are never held by more
than the evaluation itself: they wait at their next collective while the main process evaluates.

It lives at the top layer because it joins two stages: the training stage never imports evaluation.
"""

from __future__ import annotations

import copy
import logging
import statistics
from pathlib import Path

from medssr_hub.errors import InputError
from medssr_hub.evaluation.config import EvalConfig
from medssr_hub.evaluation.evaluate import Evaluator
from medssr_hub.generation.embedded import EmbeddedBackend
from medssr_hub.training.hubsync import EVALUATION_FILE
from medssr_hub.training.precision import sharded_weights
from medssr_hub.training.runner import TrainerBound

logger = logging.getLogger(__name__)


class CheckpointEvaluation(TrainerBound):
    """Scores each checkpoint at its save (main process only); bound to the trainer once it is built."""

    def __init__(self, script_args, training_args):
        if sharded_weights(training_args):
            raise InputError(
                "eval_benchmarks scores the model the main process holds: not with FSDP or ZeRO-3, whose "
                "weights are sharded; evaluate the published checkpoints with `medssr-hub evaluate` instead"
            )
        super().__init__()
        self.script_args = script_args
        self.max_tokens = script_args.eval_max_tokens or getattr(training_args, "max_completion_length", 256)

    def config(self, checkpoint: Path, step: int) -> EvalConfig:
        args = self.script_args
        # The model scored is the weights this checkpoint holds (a local path: never published).
        return EvalConfig(
            model=str(checkpoint),
            display_name=f"checkpoint-{step}",
            chat=args.chat,
            benchmarks=list(args.eval_benchmarks),
            max_items=args.eval_max_items,
            num_samples=args.eval_num_samples,
            max_tokens=self.max_tokens,
            output_dir=str(checkpoint / "evaluation"),
            hub=args.hub,
        )

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.trainer is None:
            raise RuntimeError("CheckpointEvaluation is not bound to a trainer")
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        # A copy of the tokenizer: the backend pads on the left, the trainer's own settings stay untouched.
        backend = EmbeddedBackend(model_and_tokenizer=(model, copy.deepcopy(self.trainer.processing_class)))
        was_training = model.training
        model.eval()
        try:
            cfg = self.config(checkpoint, state.global_step)
            results = Evaluator(cfg, backend=backend).run()
        finally:
            model.train(was_training)
        (checkpoint / EVALUATION_FILE).write_text((checkpoint / "evaluation" / "results.md").read_text())
        benchmarks = results["benchmarks"]
        logs = {f"eval/{name}": b["mean"] for name, b in benchmarks.items()}
        logs["eval/average"] = statistics.fmean(b["mean"] for b in benchmarks.values())
        state.log_history.append({**logs, "step": state.global_step})
        # The reporters (TensorBoard, trackio) log it like the trainer's own metrics, on this process.
        self.trainer.callback_handler.on_log(args, state, control, logs=logs)
        logger.info(
            "Checkpoint %d scored %.1f%% on %s (%d items each)",
            state.global_step,
            100 * logs["eval/average"],
            ", ".join(benchmarks),
            self.script_args.eval_max_items,
        )


def checkpoint_callbacks(script_args, training_args) -> list[TrainerBound]:
    """The evaluation callback when a training config asks for it (`eval_benchmarks`), else none."""
    return [CheckpointEvaluation(script_args, training_args)] if script_args.eval_benchmarks else []
