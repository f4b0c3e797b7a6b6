"""Evaluation on the ten benchmarks: `python recipes/evaluate.py recipes/evaluation/config_demo.yaml [flags]`.

Thin launcher over `medssr-hub evaluate --config ...`: the logic lives in `medssr_hub.evaluation`.
Flags override the YAML (see `medssr-hub evaluate --help`).
"""

import sys

from medssr_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", "--config", *sys.argv[1:]]))
