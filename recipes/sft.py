"""SFT distillation baseline: `accelerate launch recipes/sft.py --config recipes/smollm2/sft.yaml`.

Thin launcher: the logic lives in `medssr_hub.training.sft`.
"""

import sys

from medssr_hub.training.sft import cli

if __name__ == "__main__":
    sys.exit(cli())
