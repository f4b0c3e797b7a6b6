"""The one place an `accelerate launch` command line is built: for the runs that launch their training
(the demo's and the ablation's `launch:`), and for a recipe of this checkout (tests, bench)."""

import sys
from collections.abc import Sequence
from pathlib import Path

from medssr_hub.paths import recipe_path

RECIPES = Path(__file__).resolve().parents[3] / "recipes"  # the launchers of a checkout (tests, bench)


def accelerate_launch(
    program: Sequence[str],
    num_processes: int = 1,
    config_file: str | Path | None = None,
    pinned: bool = False,
) -> list[str]:
    """`accelerate launch [--config_file F] --num_processes N PROGRAM...` with this interpreter's accelerate.
    `pinned` also fixes what accelerate would otherwise read from its default config or guess (no mixed
    precision, one machine, no dynamo): the same command on every machine, as tests and benches need."""
    fixed = ["--mixed_precision", "no", "--num_machines", "1", "--dynamo_backend", "no"] if pinned else []
    return [
        str(Path(sys.executable).parent / "accelerate"), "launch",
        *(["--config_file", str(config_file)] if config_file else []),
        "--num_processes", str(num_processes), *fixed, *program,
    ]  # fmt: skip


def launch_command(
    recipe: str, config: str, *args: str, num_processes: int = 1, accelerate_config: str | None = None
) -> list[str]:
    """`accelerate launch` argv for a recipe of this checkout (`stage1.py`, `smollm2/stage1.yaml`), with an
    accelerate config of `recipes/accelerate_configs/` (`ddp.yaml`) when named."""
    return accelerate_launch(
        [str(RECIPES / recipe), "--config", str(recipe_path(f"recipes/{config}")), *args],
        num_processes,
        RECIPES / "accelerate_configs" / accelerate_config if accelerate_config else None,
        pinned=True,
    )
