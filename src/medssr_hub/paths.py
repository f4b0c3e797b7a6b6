"""Where things live: the cache, the benchmarks folder, and the files shipped inside the package.

Ground layer: imports nothing of ours. Card templates and recipe defaults are package data
(`importlib.resources`), so an installed wheel finds them as a checkout does.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

CACHE_ENV = "MEDSSR_HUB_CACHE"
BENCHMARKS_ENV = "MEDSSR_BENCHMARKS_DIR"
# The developers' and CI's shared benchmark files, beside the checkout; a user's machine has none.
SHARED_BENCHMARKS = Path("../shared/benchmarks")


def cache_dir() -> Path:
    """$MEDSSR_HUB_CACHE, else $HF_HOME/medssr_hub (HF_HOME itself follows XDG_CACHE_HOME)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME).expanduser() / "medssr_hub"


def benchmarks_dir(configured: str | Path | None = None) -> Path | None:
    """The configured folder, else $MEDSSR_BENCHMARKS_DIR, else ../shared/benchmarks, else the samples
    shipped in the package (`sample_benchmarks()`: 50 items of the benchmarks whose licence allows it).

    A folder that is named (config or environment) but missing is an error, never silently skipped.
    """
    named = configured or os.environ.get(BENCHMARKS_ENV)
    if named:
        if not Path(named).expanduser().is_dir():
            raise FileNotFoundError(
                f"No benchmarks folder at {named}: set {BENCHMARKS_ENV} (or benchmarks_dir in the config) to "
                "a folder of MedSSR-format JSON files (id, question with 'A. ...' option lines, gold)"
            )
        return Path(named).expanduser()
    return SHARED_BENCHMARKS if SHARED_BENCHMARKS.is_dir() else sample_benchmarks()


def sample_benchmarks() -> Path:
    """The benchmark samples shipped as package data (see its README.md for licences and attribution)."""
    return package_data("benchmarks")


def describe_benchmark_source(path: str | Path) -> str:
    """How results name where a benchmark file came from: the shipped sample by name, else the path."""
    path = Path(path)
    if path.parent.resolve() == sample_benchmarks().resolve():
        return f"medssr-hub sample: {path.name} (first 50 items; licence in medssr_hub/data/benchmarks)"
    return str(path)


def package_data(*parts: str) -> Path:
    """A file or folder under `medssr_hub/data/` (card templates, recipe defaults)."""
    path = Path(str(resources.files("medssr_hub").joinpath("data", *parts)))
    if not path.exists():
        raise FileNotFoundError(f"medssr_hub package data {'/'.join(parts)} is missing (broken install?)")
    return path


def recipe_path(name: str | Path) -> Path:
    """A recipe YAML: the path as given if it exists, else the recipe shipped with the package.

    `recipes/smollm2/stage1.yaml` therefore works from a checkout and from an installed wheel alike.
    """
    path = Path(name).expanduser()
    if path.exists():
        return path
    relative = path.as_posix().removeprefix("recipes/")
    shipped = Path(str(resources.files("medssr_hub").joinpath("data", "recipes", relative)))
    if shipped.is_file():
        return shipped
    raise FileNotFoundError(f"{name}: no such recipe file (nor a shipped one under recipes/)")
