"""Publishing training runs: a branch per checkpoint (optional) and the final model with its card."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import statistics
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from medssr_hub.hub import StageRelease, publish
from medssr_hub.hub.cards import model_card
from medssr_hub.utils import atomic_write_json

logger = logging.getLogger(__name__)

# A checkpoint's evaluation table (markdown), written into its folder by the evaluation during training
# (`medssr_hub.runs.checkpoint_eval`): the checkpoint's card shows it.
EVALUATION_FILE = "evaluation.md"
# Checkpoint files that only resuming needs: never published.
RESUME_ONLY = ("optimizer.pt", "scheduler.pt", "rng_state", "scaler.pt", "global_step")
# Trainer files that stay on this machine: `training_args.bin` pickles the TrainingArguments, with this
# machine's paths (output_dir, logging_dir) and any hub_token. The card and medssr_config.json publish the
# config, credentials redacted and local paths masked.
LOCAL_ONLY = ("training_args.bin",)


def run_config(*dataclass_args) -> dict[str, Any]:
    """The full run config for the card (cards redact credential-like keys such as hub_token)."""
    out = {}
    for obj in dataclass_args:
        values = obj.to_dict() if hasattr(obj, "to_dict") else dataclasses.asdict(obj)
        out[type(obj).__name__] = json.loads(json.dumps(values, default=str))
    return out


# The rewards' per-step diagnostics (training.rewards, training.online_vote) the card summarises.
DIAGNOSTICS = (
    "medssr/parse_rate",
    "medssr/recovery_rate",
    "medssr/key_accuracy",
    "medssr/label_accuracy",
    "medssr/reward_accuracy",
    "medssr/vote_no_majority",
)


def reward_summary(log_history: list[dict[str, Any]]) -> dict[str, Any]:
    """First and last logged reward, quarter means, and the diagnostics' means, from the log history."""
    logs = [h for h in log_history if ("reward" in h or "loss" in h) and "train_runtime" not in h]
    rewards = [h["reward"] for h in logs if h.get("reward") is not None]
    out: dict[str, Any] = {"logged steps": len(logs)}
    if rewards:
        k = max(1, len(rewards) // 4)
        out["reward, first / last logged"] = f"{rewards[0]:.3f} / {rewards[-1]:.3f}"
        out["reward, mean of first / last quarter"] = (
            f"{statistics.fmean(rewards[:k]):.3f} / {statistics.fmean(rewards[-k:]):.3f}"
        )
    for key in (*DIAGNOSTICS, "frac_reward_zero_std"):
        values = [h[key] for h in logs if h.get(key) is not None]
        if values:
            out[f"{key.removeprefix('medssr/')}, mean"] = f"{statistics.fmean(values):.3f}"
    losses = [h["loss"] for h in logs if h.get("loss") is not None]
    if losses:
        out["loss, first / last"] = f"{losses[0]:.4f} / {losses[-1]:.4f}"
    return out


def plot_curves(log_history: list[dict[str, Any]], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {
        key: [(h["step"], h[key]) for h in log_history if h.get(key) is not None and "step" in h]
        for key in ("reward", "medssr/key_accuracy", "medssr/parse_rate", "loss")
    }
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, points in series.items():
        ax.plot(*zip(*points, strict=True), marker="o", label=key.removeprefix("medssr/"))
    ax.set_xlabel("step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _stage_checkpoint(checkpoint: Path, staging: Path) -> Path:
    """Hard-link the publishable files of a checkpoint or the final model (weights, tokenizer, trainer
    state, card files) into `staging`: never what only resuming needs, never what stays on this machine."""
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for src in checkpoint.iterdir():
        if src.is_file() and not src.name.startswith((*RESUME_ONLY, *LOCAL_ONLY)):
            try:
                os.link(src, staging / src.name)
            except OSError:
                shutil.copyfile(src, staging / src.name)
    return staging


class CardContext:
    """What the cards of one run share: repo, base model, datasets, config."""

    def __init__(self, *, repo_id, version, stage, base_model, datasets, config, hub, data_fields):
        self.repo_id, self.version, self.stage = repo_id, version, stage
        self.base_model, self.datasets, self.config, self.hub = base_model, datasets, config, hub
        self.data_fields = data_fields

    def release(self) -> StageRelease:
        """The final model's release: checked before training, published after it."""
        return StageRelease(self.repo_id, self.version, self.config, self.hub, repo_type="model")

    def card(self, version: str, log_history, summary: str, plots=None, evaluation=None):
        return model_card(
            repo_id=self.repo_id,
            version=version,
            pretty_name=f"{self.repo_id.split('/')[-1]} ({self.stage})",
            summary=summary,
            stage=self.stage,
            base_model=self.base_model,
            datasets=self.datasets,
            provenance=self.data_fields,
            training=reward_summary(log_history),
            evaluation=evaluation,
            plots=plots or {},
            config=self.config,
            tags=["grpo" if self.stage != "sft" else "sft", self.stage],
        )


class HubCheckpointCallback(TrainerCallback):
    """Publishes every saved checkpoint (weights only) to the branch `checkpoint-<step>`, in the background.

    Only the main process publishes. At a save it hard-links the checkpoint's weights into a staging folder
    (instant, and safe from `save_total_limit` deleting the checkpoint) and hands the publish (hashing and
    copying 16 GB for an 8B model) to one background thread, so training goes on: the other ranks never
    wait inside a collective while rank 0 copies. Publishes run one at a time, in step order; the end of
    training waits for the last. A failed checkpoint publish is logged and training goes on; the final
    publish raises.
    """

    def __init__(self, context: CardContext, publisher=publish):
        self.context = context
        self.publisher = publisher
        self.pending: list[tuple[str, Future]] = []
        self._pool: ThreadPoolExecutor | None = None

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        name = f"checkpoint-{state.global_step}"
        checkpoint = Path(args.output_dir) / name
        if not checkpoint.is_dir():
            return
        staging = _stage_checkpoint(checkpoint, Path(args.output_dir) / "publish-staging" / name)
        evaluation = checkpoint / EVALUATION_FILE
        card = self.context.card(
            name,
            list(state.log_history),
            f"Checkpoint at step {state.global_step} of a {self.context.stage} run.",
            evaluation=evaluation.read_text() if evaluation.is_file() else None,
        )
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medssr-publish")
        self.pending.append((name, self._pool.submit(self._publish, staging, name, card)))
        logger.info("Publishing %s to %s in the background", name, self.context.repo_id)

    def _publish(self, staging: Path, name: str, card) -> None:
        try:
            self.publisher(
                staging,
                self.context.repo_id,
                None,
                card=card,
                repo_type="model",
                branch=name,
                hub=self.context.hub,
            )
        except Exception as e:  # a checkpoint publish must not end training; the final one raises
            logger.warning("Publishing %s to %s failed (training goes on): %s", name, self.context.repo_id, e)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def wait(self) -> None:
        """Block until every checkpoint handed to the background thread is published (or has failed)."""
        if self.pending:
            logger.info(
                "Waiting for %d checkpoint publish(es) to finish", sum(not f.done() for _, f in self.pending)
            )
        for _, future in self.pending:
            future.result()
        self.pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def on_train_end(self, args, state, control, **kwargs):
        self.wait()


def finish(trainer, args, context: CardContext | None, output_dir: str | Path, peft: bool) -> Path:
    """Save the final model (LoRA merged if asked), its card, curves and summary; publish if asked."""
    final = Path(output_dir) / "final"
    if peft and args.merge_lora:
        model = trainer.accelerator.unwrap_model(trainer.model)
        if trainer.accelerator.is_main_process:
            model.merge_and_unload().save_pretrained(final)
    else:
        trainer.save_model(str(final))
    if not trainer.accelerator.is_main_process:
        return final
    trainer.processing_class.save_pretrained(final)
    history = trainer.state.log_history
    plots = {}
    if plot_curves(history, final / "training_curves.png"):
        plots["Training curves"] = "training_curves.png"
    summary = reward_summary(history)
    atomic_write_json(
        final / "train_summary.json",
        {"global_step": trainer.state.global_step, "summary": summary, "log_history": history},
    )
    headline = [
        f"{k} {summary[k]}" for k in ("reward, first / last logged", "parse_rate, mean") if k in summary
    ]
    logger.info(
        "Trained %d steps (%s); final model in %s", trainer.state.global_step, "; ".join(headline), final
    )
    if context is not None and args.publish_repo:
        evaluation = Path(args.evaluation).read_text() if args.evaluation else None
        card = context.card(
            context.version,
            history,
            f"{context.base_model} after {trainer.state.global_step} steps of MedSSR {context.stage}.",
            plots=plots,
            evaluation=evaluation,
        )
        staging = _stage_checkpoint(final, Path(output_dir) / "publish-staging" / "final")
        try:
            result = context.release().publish(staging, card)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        logger.info("Published %s@%s (%s)", result.repo_id, result.version, result.location)
    return final
