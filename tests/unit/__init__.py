"""Tests of one module or sub-package each, mirroring src/medssr_hub/."""
