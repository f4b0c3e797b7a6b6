"""Rare-disease catalogue (real HPO files), retrieval, vignettes and rare-ratio measurement."""

import json
import random

import pytest

from medssr_hub.records import MCQRecord, load_records, records_to_dataset
from medssr_hub.synthesis.catalog import RareDiseaseCatalog, parse_frequency
from medssr_hub.synthesis.knowledge import (
    BM25Retriever,
    build_corpus,
    chunk_document,
    disease_card,
    load_documents,
)
from medssr_hub.synthesis.rare_ratio import RareDiseaseMatcher, rare_ratio
from medssr_hub.synthesis.vignettes import VignetteGenerator


@pytest.fixture(scope="module")
def catalog():
    return RareDiseaseCatalog()


def test_catalogue_has_every_orphanet_disease(catalog):
    assert len(catalog) == 4281
    assert all(d.id.startswith("ORPHA:") for d in catalog)
    assert catalog.version == "hpo-annotations:2025-01-16"
    marfan = catalog.by_id["ORPHA:558"]
    assert marfan.name == "Marfan syndrome"
    assert marfan.inheritance == ["Autosomal dominant inheritance"] and marfan.genes == ["FBN1"]
    features = {p.name: p.frequency for p in marfan.phenotypes}
    assert features["Arachnodactyly"] == pytest.approx(0.895) and features["Ectopia lentis"] == pytest.approx(
        0.545
    )
    assert catalog.by_id["ORPHA:586"].inheritance == ["Autosomal recessive inheritance"]
    assert sum(bool(d.genes) for d in catalog) > 2000 and sum(bool(d.inheritance) for d in catalog) > 1500


@pytest.mark.parametrize(
    ("raw", "value"), [("HP:0040281", 0.895), ("3/4", 0.75), ("45%", 0.45), ("", 0.5), ("0/0", 0.5)]
)
def test_frequencies(raw, value):
    assert parse_frequency(raw) == pytest.approx(value)


def test_user_catalogue_extends_or_replaces(tmp_path, catalog):
    row = {
        "id": "LOCAL:1",
        "name": "Zebra fever syndrome",
        "phenotypes": [{"name": "Striped rash", "frequency": 0.9}],
        "inheritance": ["Autosomal recessive inheritance"],
        "genes": ["ZBR1"],
    }
    path = tmp_path / "extra.jsonl"
    path.write_text(json.dumps(row) + "\n")
    extended = RareDiseaseCatalog(extra=[path])
    assert len(extended) == 4282 and extended.by_id["LOCAL:1"].genes == ["ZBR1"]
    assert extended.version.endswith("+extra.jsonl")
    only = RareDiseaseCatalog(extra=[path], replace=True)
    assert [d.id for d in only] == ["LOCAL:1"]
    path.write_text('{"name": "no id"}\n')
    with pytest.raises(ValueError, match="extra.jsonl:1: not a catalogue row"):
        len(RareDiseaseCatalog(extra=[path], replace=True))


def test_retrieval_finds_the_disease_from_its_features(catalog, tmp_path):
    card = disease_card(catalog.by_id["ORPHA:558"])
    assert card.id == "card:ORPHA:558" and "FBN1" in card.text and "very frequent (80-99%): " in card.text
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        json.dumps(
            {"title": "Loeys-Dietz note", "text": "Loeys-Dietz syndrome shows arterial tortuosity " * 60}
        )
        + "\n"
    )
    documents = load_documents(str(docs))
    assert len(documents) == 2 and documents[0].id == "doc:Loeys-Dietz note#0"
    retriever = BM25Retriever(build_corpus(catalog, documents))
    hits = retriever.search(
        "tall stature arachnodactyly ectopia lentis aortic root aneurysm pneumothorax", k=5
    )
    assert "card:ORPHA:558" in [h.id for h in hits]
    assert retriever.search("arterial tortuosity", k=1)[0].id.startswith("doc:Loeys-Dietz note")
    assert len(chunk_document("t", "word " * 450, words=200, overlap=40)) == 3


def test_vignettes_have_known_keys_and_similar_distractors(catalog):
    generator = VignetteGenerator(catalog)
    rng = random.Random(7)
    marfan = catalog.by_id["ORPHA:558"]
    q = generator.generate(marfan, rng, "diagnosis")
    assert q.options[q.answer] == "Marfan syndrome" and len(q.options) == 5
    assert "Marfan" not in q.question
    similar = {d.name for d in generator.similar(marfan, limit=20)}
    assert all(text in similar for letter, text in q.options.items() if letter != q.answer)
    for qtype, expected in [("inheritance", "Autosomal dominant inheritance"), ("gene", "FBN1")]:
        q = generator.generate(marfan, rng, qtype)
        assert q.options[q.answer] == expected and q.metadata["qtype"] == qtype
    # Deterministic for a seed, and valid records the loaders accept.
    again = VignetteGenerator(catalog).generate(marfan, random.Random(7), "diagnosis")
    assert again == generator.generate(marfan, random.Random(7), "diagnosis")
    records = [r for r in (generator.generate(d, rng) for d in generator.eligible[:200]) if r]
    assert len(records) > 150
    assert all(r.options[r.answer] not in r.question for r in records)
    reloaded, report = load_records(_to_jsonl(records))
    assert not report.rejected and len(reloaded) == len(records)


def _to_jsonl(records: list[MCQRecord]):
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "v.parquet"
    records_to_dataset(records).to_parquet(path)
    return path


def test_rare_ratio_of_the_shared_benchmarks(catalog, benchmarks_dir):
    matcher = RareDiseaseMatcher(catalog)
    assert matcher.find("A boy with Marfan's syndrome and cystic fibrosis (CF).") == [
        "ORPHA:558",
        "ORPHA:586",
    ]
    assert matcher.find("Lupus is not named; Systemic lupus erythematosus is.") == ["ORPHA:536"]
    assert matcher.find("Nothing rare here: a cold and a cough.") == []
    records, _ = load_records(benchmarks_dir / "medqa.json")
    result = rare_ratio(records, matcher)
    assert result.total == 1273 and 0.03 < result.ratio < 0.15
    assert all(
        matcher.find(next(r for r in records if r.id == qid).format()) == ids
        for qid, ids in result.examples.items()
    )


def test_rare_disease_subset_by_name_or_synonym_with_word_boundaries(tmp_path, catalog, benchmarks_dir):
    """`medssr-hub raredis-subset`: the items naming a catalogue disease, with ORPHA ids and matched text;
    scored by the evaluator as a rare-disease row called "catalogue-matched", never RareDis-Sub."""
    from medssr_hub.cli import main
    from medssr_hub.evaluation.registry import is_rare, title
    from medssr_hub.synthesis.raredis_subset import SUBSET_FILE, select_rare_items

    extra = tmp_path / "extra.jsonl"
    extra.write_text(
        json.dumps({"id": "LOCAL:7", "name": "Zebra fever syndrome", "synonyms": ["ZFS type 2"]})
    )
    matcher = RareDiseaseMatcher(RareDiseaseCatalog(extra=[extra]))
    options = {"A": "Chronic granulomatous disease", "B": "Marfan syndromes", "C": "Wilson's disease"}
    items = [
        MCQRecord("q1", "A child with ZFS type 2 and a fever?", options, answer="A"),
        MCQRecord("q2", "Which is right?", {"A": "Marfan syndromes", "B": "Marfanoid habitus"}, answer="B"),
        MCQRecord(
            "q3", "Which vasculitis?", {"A": "Eosinophilic granulomatosis with polyangiitis", "B": "x"}, "A"
        ),
    ]
    rows = {r["id"]: r for r in select_rare_items([("mine", items)], matcher)}
    assert set(rows) == {"q1", "q3"}  # "Marfan syndromes" and "Marfanoid" are not "Marfan syndrome"
    q1 = rows["q1"]
    assert q1["orpha_ids"][0] == "LOCAL:7" and q1["matched"][0] == "ZFS type 2"  # a synonym, as written
    assert "Wilson's disease" in q1["matched"] and q1["gold"] == "A" and q1["name"] == "raredis_catalogue"
    assert rows["q3"]["matched"] == ["Eosinophilic granulomatosis with polyangiitis"]  # not also GPA
    # The command over two real benchmark files.
    out = tmp_path / "subset"
    files = [str(benchmarks_dir / "medqa.json"), str(benchmarks_dir / "mmlu.json")]
    assert main(["raredis-subset", *files, "--output", str(out)]) == 0
    subset = json.loads((out / SUBSET_FILE).read_text())
    stats = json.loads((out / "stats.json").read_text())
    assert stats["items"] == len(subset) == stats["selected"]["medqa"] + stats["selected"]["mmlu"] > 100
    assert all(r["orpha_ids"][0].startswith("ORPHA:") and r["matched"][0] in r["question"] for r in subset)
    # It loads as a benchmark, counts as rare, and is titled as what it is.
    records, _ = load_records(out / SUBSET_FILE)
    assert len(records) == len(subset) and is_rare("raredis_catalogue")
    assert title("raredis_catalogue") == "Rare (catalogue-matched)" and "RareDis" not in title(
        "raredis_catalogue"
    )
