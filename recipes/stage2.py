"""MedSSR stage 2: `accelerate launch [--config_file recipes/accelerate_configs/zero2.yaml] recipes/stage2.py --config recipes/smollm2/stage2.yaml`.

Thin launcher: the logic lives in `medssr_hub.training.grpo` (stage 1 and stage 2 differ only by YAML).
Any GRPOConfig / ModelConfig / script field can be overridden on the command line (`--max_steps 2`).
"""

import sys

from medssr_hub.training.grpo import cli

if __name__ == "__main__":
    sys.exit(cli())
