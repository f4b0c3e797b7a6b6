"""Leaderboard of evaluation runs: `python recipes/leaderboard.py --config recipes/leaderboard/config_demo.yaml [--results DIR ...]`.

Thin launcher, the same as `medssr-hub leaderboard --config FILE.yaml [--field value ...]`: the logic lives in
`medssr_hub`. Any field of the config can be overridden on the command line; `--help` lists them.
"""

import sys

from medssr_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["leaderboard", *sys.argv[1:]]))
