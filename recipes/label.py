"""Pseudo-labeling (MedSSR step 2): `python recipes/label.py --config recipes/labeling/config_demo.yaml [--input REPO --input_revision R]`.

Thin launcher, the same as `medssr-hub label --config FILE.yaml [--field value ...]`: the logic lives in
`medssr_hub`. Any field of the config can be overridden on the command line; `--help` lists them.
"""

import sys

from medssr_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["label", *sys.argv[1:]]))
