"""docs/paper-values.md against the shipped paper-scale recipes: every value is in the table, sourced or named
ours, and the two cannot drift apart."""

from fnmatch import fnmatch

import yaml

from tests.support.paths import ROOT

RECIPES = ROOT / "recipes"
TABLE = ROOT / "docs" / "paper-values.md"
PAPER_SCALE = (
    "qwen3-8b-base/*.yaml",
    "llama3.1-8b/*.yaml",
    "labeling/config_qwen3.yaml",
    "synthesis/config_tgi.yaml",
    "evaluation/config_paper.yaml",
    "evaluation/config_paper_vllm.yaml",
)
ANY = object()


def rows() -> list[dict]:
    """The tables' rows: keys, value (ANY for `*`), config globs, source, why."""
    found = []
    for line in TABLE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if (
            len(cells) != 5
            or not line.startswith("| ")
            or cells[0] in ("key", "---")
            or set(cells[0]) <= {"-"}
        ):
            continue
        keys, value, configs, source, why = cells
        assert value.startswith("`") and value.endswith("`"), line
        value = value.strip("`")
        found.append(
            {
                "line": line,
                "keys": [k.strip() for k in keys.split(",")],
                "value": ANY if value == "*" else yaml.safe_load(value),
                "globs": [g.strip() for g in configs.split(",")],
                "source": source,
                "why": why,
            }
        )
    return found


def shipped() -> dict[str, dict]:
    files = sorted({p for pattern in PAPER_SCALE for p in RECIPES.glob(pattern)})
    assert len(files) == 14, files
    return {str(p.relative_to(RECIPES)): yaml.safe_load(p.read_text()) for p in files}


def test_every_paper_scale_value_is_in_the_table_once_with_its_value():
    table, recipes = rows(), shipped()
    used = set()
    for name, values in recipes.items():
        for key, value in values.items():
            matches = [
                i
                for i, r in enumerate(table)
                if key in r["keys"] and any(fnmatch(name, g) for g in r["globs"])
            ]
            assert len(matches) == 1, f"{name}: {key} is in {len(matches)} rows of {TABLE.name}"
            row = table[matches[0]]
            assert row["value"] is ANY or row["value"] == value, f"{name}: {key} is {value!r}; {row['line']}"
            used.add((matches[0], key))
    for i, row in enumerate(table):  # no row the recipes no longer hold
        for key in row["keys"]:
            assert (i, key) in used, f"stale row (no file has it): {row['line']}"


def test_every_value_is_sourced_or_named_ours():
    for row in rows():
        if row["value"] is ANY:
            continue
        assert row["source"] or row["why"].startswith("ours"), row["line"]
        if row["source"].startswith("official"):
            assert "`" in row["source"] and ":" in row["source"], row["line"]  # a file and line


def test_no_paper_scale_recipe_calls_our_values_the_papers():
    for name in shipped():
        text = (RECIPES / name).read_text().lower()
        if "evaluation" in name:
            continue  # the evaluation protocol is sourced, row by row
        assert "paper's" not in text and "as in the paper" not in text and "paper scale" not in text, name
