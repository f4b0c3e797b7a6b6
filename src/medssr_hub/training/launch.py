"""The `accelerate launch` command line of a recipe in this checkout (tests, bench)."""

import sys
from pathlib import Path

from medssr_hub.paths import recipe_path

RECIPES = Path(__file__).resolve().parents[3] / "recipes"  # the launchers of a checkout (tests, bench)


def launch_command(
    recipe: str, config: str, *args: str, num_processes: int = 1, accelerate_config: str | None = None
) -> list[str]:
    """`accelerate launch` argv for a recipe of this checkout (`stage1.py`, `smollm2/stage1.yaml`), with an
    accelerate config of `recipes/accelerate_configs/` (`ddp.yaml`) when named."""
    config_file = (
        ["--config_file", str(RECIPES / "accelerate_configs" / accelerate_config)]
        if accelerate_config
        else []
    )
    return [
        str(Path(sys.executable).parent / "accelerate"), "launch", *config_file, "--num_processes", str(num_processes),
        "--mixed_precision", "no", "--num_machines", "1", "--dynamo_backend", "no",
        str(RECIPES / recipe), "--config", str(recipe_path(f"recipes/{config}")), *args,
    ]  # fmt: skip
