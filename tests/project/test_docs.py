"""The README is a front door and the docs are documentation: short, and written for users. (`make test`
builds the docs site with `mkdocs build --strict`, so a broken link or a page missing from the nav fails.)"""

import re

import yaml

from tests.support.paths import ROOT

PAGES = sorted((ROOT / "docs").glob("*.md"))


def test_the_readme_fits_on_a_few_screens_and_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300
    linked = set(re.findall(r"\]\(docs/([\w-]+\.md)\)", readme))
    assert linked == {p.name for p in PAGES} - {"index.md"}, linked ^ ({p.name for p in PAGES} - {"index.md"})
    for command in ("make demo", "make test"):
        assert f"\n{command} " in readme


def test_every_page_is_in_the_nav():
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    assert sorted(page for entry in nav for page in entry.values()) == [p.name for p in PAGES]


def test_no_page_reads_like_a_development_log():
    diary = re.compile(
        r"\bissue \d+|\bissues? #\d+|\bstop \d+|\bsession|\bI\b(?!/O)|\bmy\b|\bmine\b|closing note"
    )
    for page in [ROOT / "README.md", *PAGES]:
        text = re.sub(r"```.*?```|`[^`\n]*`", "", page.read_text(), flags=re.S)  # code aside
        found = diary.findall(text)
        assert not found, (page.name, found)
