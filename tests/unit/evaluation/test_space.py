"""The leaderboard Space: published beside each leaderboard, served by `medssr-hub space` on 127.0.0.1 over
two published leaderboards (merged), and driven in a real headless browser (Playwright, Debian's Chromium):
the table shows both models, sorting changes their order, and the details view shows an item's generation.
A screenshot is written to $MEDSSR_SCREENSHOTS (or the test's folder)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from medssr_hub.evaluation.evaluate import EvalConfig, Evaluator
from medssr_hub.evaluation.leaderboard import leaderboard_release, push_leaderboard, write_leaderboard
from medssr_hub.evaluation.runs import Run
from medssr_hub.hub import LocalHub

CLI = str(Path(sys.executable).with_name("medssr-hub"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MODELS = ("smollm2 (T 0.6)", "smollm2 (greedy)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def leaderboards(tmp_path_factory, benchmarks_dir):
    """Two leaderboards, one model each, from real evaluation runs of the embedded model, published."""
    root = tmp_path_factory.mktemp("space")
    hub = root / "hub"
    sources = []
    for k, (name, temperature) in enumerate(zip(MODELS, (0.6, 0.0), strict=True)):
        cfg = EvalConfig(
            display_name=name,
            benchmarks=[str(benchmarks_dir / "medqa.json"), str(benchmarks_dir / "bioasq.json")],
            max_items=2,
            num_samples=1,
            max_tokens=12,
            temperature=temperature,
            output_dir=str(root / f"eval{k}"),
        )
        runs = [Run.from_folder(cfg.output_dir, Evaluator(cfg).run())]
        files = write_leaderboard(runs, root / f"board{k}")
        push_leaderboard(runs, files, leaderboard_release(runs, f"medssr-test/board{k}", "v0.1.0", str(hub)))
        sources.append(f"medssr-test/board{k}@v0.1.0")
    return hub, sources, root


def test_publishing_a_leaderboard_publishes_its_space(leaderboards):
    hub, sources, _ = leaderboards
    space = LocalHub(hub).pull("medssr-test/board0", "v0.1.0", "space")
    assert json.loads((space / "leaderboards.json").read_text()) == [sources[0]]
    assert (
        "sdk: gradio" in (space / "README.md").read_text()
        and "app_file: app.py" in (space / "README.md").read_text()
    )
    assert (
        "def build(" in (space / "app.py").read_text()
        and "gradio" in (space / "requirements.txt").read_text()
    )


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None, reason="no system Chromium (make install-test installs Debian's package)"
)
def test_a_leaderboard_version_from_other_runs_is_refused_before_any_file(leaderboards):
    """The leaderboard publishes through the stages' release: its settings (the runs' configs) are checked
    before a file is written, and the same runs again are a no-op."""
    from medssr_hub.evaluation.leaderboard import LeaderboardConfig, run_leaderboard
    from medssr_hub.hub.common import RUN_CONFIG, VersionExistsError

    hub, _, root = leaderboards
    published = json.loads((LocalHub(hub).pull("medssr-test/board0", "v0.1.0") / RUN_CONFIG).read_text())
    assert list(published) == [MODELS[0]] and published[MODELS[0]]["temperature"] == 0.6
    out = root / "refused"
    other = LeaderboardConfig(
        results=[str(root / "eval1")], output_dir=str(out), publish_repo="medssr-test/board0", hub=str(hub)
    )
    with pytest.raises(VersionExistsError, match=r"board0@v0.1.0 is already published from other settings"):
        run_leaderboard(other)
    assert not out.exists()
    same = LeaderboardConfig(
        results=[str(root / "eval0")], output_dir=str(out), publish_repo="medssr-test/board0", hub=str(hub)
    )
    before = LocalHub(hub).versions("medssr-test/board0", "dataset")
    assert run_leaderboard(same)[2].version == "v0.1.0"
    assert LocalHub(hub).versions("medssr-test/board0", "dataset") == before


def test_the_space_ranks_as_the_leaderboard_does_and_reads_the_folder_it_writes(leaderboards, tmp_path):
    """One ranking: the Space's all-benchmarks view takes each model's averages, and their order, from the
    leaderboard's published `ranking` (`tables.table_rows`, which leaderboard.md, csv, json and png use), and
    a folder `medssr-hub leaderboard` writes is a source as it is."""
    from medssr_hub.evaluation.runs import load_runs
    from medssr_hub.evaluation.space import check_results_table, load_app
    from medssr_hub.evaluation.tables import table_rows

    hub, sources, root = leaderboards
    runs = [run for source in sources for run in load_runs(source, str(hub))]
    write_leaderboard(runs, tmp_path / "board")
    check_results_table("board", tmp_path / "board")
    app = load_app()
    results, _, ranking = app.merge([("board", str(tmp_path / "board"))])
    expected = table_rows(runs)
    shown = app.leaderboard_table(results, app.ALL, app.SORTS[0], ranking)
    assert list(shown["model"]) == [row["model"] for row in expected]
    assert list(shown["average (%)"]) == [round(100 * row["average"], 1) for row in expected]
    md = (tmp_path / "board" / "leaderboard.md").read_text().split("\n\n")[0]  # the first table
    md_rows = [line for line in md.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in md_rows] == list(shown["model"])


def test_the_space_in_a_real_browser(leaderboards):
    from playwright.sync_api import expect, sync_playwright

    from medssr_hub.evaluation.runs import load_runs
    from medssr_hub.evaluation.tables import table_rows

    hub, sources, root = leaderboards
    port = free_port()
    env = {**os.environ, "MEDSSR_HUB_ROOT": str(hub), "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [CLI, "space", *sources, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180
        while True:
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                assert time.time() < deadline, "the app did not answer in 180 s"
                time.sleep(1)
        details = pd.read_parquet(
            next(LocalHub(hub).pull("medssr-test/board1", "v0.1.0").glob("data/details-*.parquet"))
        )
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(url)
            table = page.locator("#leaderboard")
            for model in MODELS:  # both leaderboards, merged
                expect(table).to_contain_text(model, timeout=60_000)

            # The grid's rows as a reader sees them (its hidden width-measuring row left out): header first.
            rows = table.get_by_role("row")
            # It opens on leaderboard.md's order: its top row is the top row of the merged leaderboard.
            top = table_rows([run for source in sources for run in load_runs(source, str(hub))])[0]["model"]
            assert rows.nth(1).inner_text().startswith(top)
            # Headers on one line at 1,400 px (a header wrapped a letter a line was hundreds of pixels tall).
            assert rows.nth(0).bounding_box()["height"] < 60, rows.nth(0).bounding_box()

            def order() -> list[str]:
                texts = [rows.nth(i).inner_text() for i in range(1, rows.count())]
                return [next(m for m in MODELS if text.startswith(m)) for text in texts]

            page.get_by_label("model, A-Z").check()
            expect(rows.nth(1)).to_contain_text(MODELS[0], timeout=30_000)
            ascending = order()
            page.get_by_label("model, Z-A").check()
            expect(rows.nth(1)).to_contain_text(MODELS[1], timeout=30_000)
            assert ascending == list(MODELS) and order() == ascending[::-1]

            # One model's answers: its generations, predictions and gold, item by item.
            page.locator("#model input").click()
            page.get_by_role("option", name=MODELS[1]).click()
            first = details.iloc[0]
            snippet = " ".join(first["generation"].split())[:20]
            view = page.locator("#details")
            expect(view).to_contain_text(snippet, timeout=30_000)  # the second model's, not the first's
            assert first["id"] in view.inner_text()
            shots = Path(os.environ.get("MEDSSR_SCREENSHOTS", root))
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / "leaderboard_space.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
