"""MedSSR stage 1: `accelerate launch [--config_file recipes/accelerate_configs/zero2.yaml] recipes/stage1.py --config recipes/smollm2/stage1.yaml`.

Thin launcher, the same as `medssr-hub stage1 --config FILE.yaml [--field value ...]`: the logic lives in
`medssr_hub`. Any field of the config can be overridden on the command line; `--help` lists them.
"""

import sys

from medssr_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["stage1", *sys.argv[1:]]))
