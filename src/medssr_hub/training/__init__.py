"""Training (MedSSR steps 3-4, and the SFT baseline) on TRL: one GRPO module, two stages by config.

Stage 1 trains on pseudo-labeled synthetic questions (target column `label`), stage 2 on human-annotated
questions (target `answer`); `recipes/stage1.py` and `recipes/stage2.py` are the same launcher with other
YAML. `sft.py` is the distillation baseline. `hubsync.py` publishes checkpoints and the final model.
"""

from medssr_hub.training.launch import RECIPES, launch_command

__all__ = ["RECIPES", "launch_command"]
