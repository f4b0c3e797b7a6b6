"""Training (MedSSR steps 3-4, and the SFT baseline) on TRL: one GRPO module, two stages by config.

Stage 1 trains on pseudo-labeled synthetic questions (target column `label`), stage 2 on human-annotated
questions (target `answer`); `recipes/stage1.py` and `recipes/stage2.py` are the same launcher with other
YAML. `sft.py` is the distillation baseline. `hubsync.py` publishes checkpoints and the final model.
"""

import sys
from pathlib import Path

from medssr_hub.paths import recipe_path

RECIPES = Path(__file__).resolve().parents[3] / "recipes"  # the launchers of a checkout (tests, bench)


def launch_command(recipe: str, config: str, *args: str, num_processes: int = 1) -> list[str]:
    """`accelerate launch` argv for a recipe of this checkout (`stage1.py`, `smollm2/stage1.yaml`)."""
    return [
        str(Path(sys.executable).parent / "accelerate"), "launch", "--num_processes", str(num_processes),
        "--mixed_precision", "no", "--num_machines", "1", "--dynamo_backend", "no",
        str(RECIPES / recipe), "--config", str(recipe_path(f"recipes/{config}")), *args,
    ]  # fmt: skip
