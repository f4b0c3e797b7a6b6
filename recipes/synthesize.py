"""Knowledge-enhanced synthesis (MedSSR step 1): `python recipes/synthesize.py recipes/synthesis/config_demo.yaml`.

Thin launcher: the logic lives in `medssr_hub.synthesis`. Flags override the YAML (see --help).
"""

import sys

from medssr_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["synthesize", *sys.argv[1:]]))
