"""Pseudo-labeling (MedSSR step 2): `python recipes/label.py recipes/labeling/config_demo.yaml [--input REPO --revision R]`.

Thin launcher: the logic lives in `medssr_hub.labeling`. Flags override the YAML (see --help).
"""

import sys

from medssr_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["label", *sys.argv[1:]]))
