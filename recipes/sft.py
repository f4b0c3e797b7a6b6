"""SFT distillation baseline: `accelerate launch recipes/sft.py --config recipes/smollm2/sft.yaml`.

Thin launcher, the same as `medssr-hub sft --config FILE.yaml [--field value ...]`: the logic lives in
`medssr_hub`. Any field of the config can be overridden on the command line; `--help` lists them.
"""

import sys

from medssr_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["sft", *sys.argv[1:]]))
