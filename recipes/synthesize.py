"""Knowledge-enhanced synthesis (MedSSR step 1): `python recipes/synthesize.py --config recipes/synthesis/config_demo.yaml`.

Thin launcher, the same as `medssr-hub synthesize --config FILE.yaml [--field value ...]`: the logic lives in
`medssr_hub`. Any field of the config can be overridden on the command line; `--help` lists them.
"""

import sys

from medssr_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["synthesize", *sys.argv[1:]]))
