"""The leaderboard as a Gradio Space: published beside every published leaderboard, served locally with
one command (`medssr-hub space ORG/NAME@version ...`).

The app itself is `data/space/app.py`, standalone (gradio, pandas and huggingface_hub only), so that the
same file runs as the Hub Space and here. This module stages it with the list of leaderboards it shows,
publishes it, and serves it over folders that our resolver found (the local hub first, then the Hub).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import SpaceCard, SpaceCardData

from medssr_hub.errors import InputError
from medssr_hub.evaluation.runs import CORE_RESULTS
from medssr_hub.hub import publish
from medssr_hub.paths import package_data
from medssr_hub.resolve import is_repo_id, resolve_dataset

logger = logging.getLogger(__name__)

APP_FILES = ("app.py", "requirements.txt")


def stage_space(folder: Path, sources: list[str], title: str) -> Path:
    """The Space's files in `folder`: the app, its requirements, `leaderboards.json` and a card."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in APP_FILES:
        shutil.copyfile(package_data("space", name), folder / name)
    (folder / "leaderboards.json").write_text(json.dumps(sources, indent=2) + "\n")
    data = SpaceCardData(
        title=title[:30], sdk="gradio", app_file="app.py", tags=["medssr-hub", "leaderboard"]
    )
    shown = "\n".join(f"- [`{s}`](https://huggingface.co/datasets/{s.partition('@')[0]})" for s in sources)
    body = (
        f"# {title}\n\nThe MedSSR leaderboard{'s' if len(sources) > 1 else ''} below as an app: sort and filter "
        "by benchmark, accuracy as mean ± std with the rule that read the answers, and one model's answers "
        f"item by item.\n\n{shown}\n\nRun it locally: `medssr-hub space {' '.join(sources)}`."
    )
    SpaceCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n").save(folder / "README.md")
    return folder


def push_space(repo_id: str, version: str, sources: list[str], hub: str | None = None):
    """Publish the app as the Space `repo_id`@`version`, showing `sources` (ORG/NAME@version)."""
    with tempfile.TemporaryDirectory() as staging:
        folder = stage_space(Path(staging), sources, f"{repo_id.split('/')[-1]} leaderboard")
        result = publish(folder, repo_id, version, repo_type="space", hub=hub)
    logger.info("Published the leaderboard Space %s@%s (%s)", result.repo_id, result.version, result.location)
    return result


def load_app():
    """The app module, loaded from the package's data folder (it is a Space's app.py, not a package module)."""
    spec = importlib.util.spec_from_file_location("medssr_hub_space_app", package_data("space", "app.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve(sources: list[str], hub: str | None = None, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve the app over `sources`: folders, or ORG/NAME@version read from `hub` (the local hub first)."""
    folders = []
    for source in sources:
        repo, _, version = source.partition("@")
        local = Path(source).expanduser()
        folders.append(
            str(
                local
                if local.exists() or not is_repo_id(repo)
                else resolve_dataset(repo, version or None, hub)
            )
        )
    for source, folder in zip(sources, folders, strict=True):
        check_results_table(source, Path(folder))
    load_app().main([*folders, "--labels", *sources, "--host", host, "--port", str(port)])


def check_results_table(source: str, folder: Path) -> None:
    """A leaderboard the app will show has a `results` table with the columns every published one has:
    another table is one line naming what it lacks, not a KeyError inside the app."""
    import pyarrow.parquet as pq

    files = sorted((folder / "data").glob("results-*.parquet"))
    if not files:
        raise InputError(f"{source}: not a published leaderboard (no data/results-*.parquet)")
    for file in files:
        try:
            columns = set(pq.read_schema(file).names)
        except Exception as e:  # not parquet at all
            raise InputError(f"{source}: {file.name} is not a parquet table ({type(e).__name__})") from e
        missing = sorted(CORE_RESULTS - columns)
        if missing:
            raise InputError(
                f"{source}: {file.name} is not a leaderboard's results table: it lacks {missing}"
            )
