"""Evaluation on the ten benchmarks: `python recipes/evaluate.py --config recipes/evaluation/config_demo.yaml [flags]`.

Thin launcher, the same as `medssr-hub evaluate --config FILE.yaml [--field value ...]`: the logic lives in
`medssr_hub`. Any field of the config can be overridden on the command line; `--help` lists them.
"""

import sys

from medssr_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
