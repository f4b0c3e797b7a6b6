"""Resume never reuses stale work (issue 21's probes): the same output folder, the same ids, but changed
question text, is generated again (evaluation) or refused with the fix named (labeling)."""

import json
import re

import pytest

from medssr_hub.evaluation.evaluate import EvalConfig, Evaluator
from medssr_hub.labeling.label import LabelConfig, Labeler, LabelingError
from medssr_hub.records import load_records


def _bench(path, records, prefix=""):
    rows = [
        {"id": r.id, "question": prefix + r.prompt_text(), "gold": r.answer, "name": "probe"} for r in records
    ]
    path.write_text(json.dumps(rows))
    return path


def test_changed_questions_with_the_same_ids_are_generated_again(tmp_path, embedded_backend, benchmarks_dir):
    records, _ = load_records(benchmarks_dir / "medqa.json")
    bench = _bench(tmp_path / "bench.json", records[:2])
    settings = dict(
        chat=True, benchmarks=[str(bench)], num_samples=1, max_tokens=8, output_dir=str(tmp_path / "o")
    )
    Evaluator(EvalConfig(**settings), embedded_backend).run()
    log = tmp_path / "o" / "generations" / "bench.jsonl"
    assert len(log.read_text().splitlines()) == 2
    Evaluator(EvalConfig(**settings), embedded_backend).run()  # unchanged: nothing generated again
    assert len(log.read_text().splitlines()) == 2
    # The first question changes, its id does not: it alone is generated again.
    rows = json.loads(bench.read_text())
    rows[0]["question"] = "Changed: " + rows[0]["question"]
    bench.write_text(json.dumps(rows))
    Evaluator(EvalConfig(**settings), embedded_backend).run()
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # in the order items finished
    assert len(lines) == 3 and lines[2]["id"] == records[0].id  # the changed one, appended
    first = [line for line in lines if line["id"] == records[0].id]
    assert len(first) == 2 and first[0]["sha"] != first[1]["sha"]


def test_another_endpoint_in_the_same_folder_is_refused(tmp_path):
    """Another server or served model name is another run: the folder's resume check refuses it."""
    from medssr_hub.errors import ConfigError
    from medssr_hub.resume import guard_resume

    def fingerprint(url, model=None):
        endpoint = {"base_url": url, **({"model": model} if model else {})}
        return EvalConfig(chat=True, backend="endpoint", endpoint=endpoint).fingerprint()

    guard_resume(tmp_path, fingerprint("http://127.0.0.1:1"), "evaluation")
    guard_resume(tmp_path, fingerprint("http://127.0.0.1:1"), "evaluation")  # the same: resumes
    for other in (fingerprint("http://127.0.0.1:2"), fingerprint("http://127.0.0.1:1", "other-model")):
        with pytest.raises(ConfigError, match=r"other settings \(endpoint\)"):
            guard_resume(tmp_path, other, "evaluation")


def test_labeling_refuses_votes_for_changed_questions(tmp_path, benchmarks_dir, embedded_dir):
    records, _ = load_records(benchmarks_dir / "medqa.json")
    data = tmp_path / "in.json"
    _bench(data, records[:2])
    cfg = dict(
        input=str(data), chat=True, n=2, max_tokens=8, shard_size=2, output_dir=str(tmp_path / "labels")
    )
    Labeler(LabelConfig(**cfg)).run()
    Labeler(LabelConfig(**cfg)).run()  # unchanged: resumes from the shard
    _bench(data, records[:2], prefix="Changed: ")
    with pytest.raises(LabelingError, match="the input's content or the served model changed"):
        Labeler(LabelConfig(**cfg)).run()


INJECT = "evil | name\n---\n<script>alert(1)</script>"


def test_user_strings_are_escaped_in_tables_and_cards(tmp_path, embedded_backend, benchmarks_dir):
    """A display name and a benchmark file name holding `|`, a line break, `---` and `<script>` go through
    evaluate, the leaderboard and a publish: every table keeps its shape and no raw tag is published."""
    import yaml

    from medssr_hub.evaluation.leaderboard import leaderboard_release, push_leaderboard, write_leaderboard
    from medssr_hub.evaluation.runs import Run
    from medssr_hub.hub import LocalHub

    records, _ = load_records(benchmarks_dir / "medqa.json")
    bench = _bench(tmp_path / "a|b<script>x.json", records[:1])
    cfg = EvalConfig(
        chat=True, display_name=INJECT, benchmarks=[str(bench)], num_samples=1, max_tokens=8,
        output_dir=str(tmp_path / "o"),
    )  # fmt: skip
    run = Run.from_folder(tmp_path / "o", Evaluator(cfg, embedded_backend).run())
    files = write_leaderboard([run], tmp_path / "lb")
    push_leaderboard(
        [run], files, leaderboard_release([run], "medssr/inject", "v1.0.0", str(tmp_path / "hub"))
    )
    card = (LocalHub(tmp_path / "hub").pull("medssr/inject", "v1.0.0") / "README.md").read_text()
    for text in (files["md"].read_text(), card, (tmp_path / "o" / "results.md").read_text()):
        # Outside fenced code blocks (the card's YAML config quotes the string, line breaks escaped).
        prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
        assert "<script>" not in prose and "```" not in prose
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
        end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
        table = lines[start:end]  # header, rule, one model row: nothing split off or injected
        widths = {row.replace("\\|", "").count("|") for row in table}
        assert len(table) == 3 and len(widths) == 1, table
    front = card.split("---\n")[1]
    assert isinstance(yaml.safe_load(front), dict)


def test_synthesis_refuses_a_changed_catalogue_under_the_same_name(tmp_path):
    """Synthesis's resume check covers its local input files (seed questions, catalogue, documents): the
    same folder after the catalogue file changed is refused with the fix named, not resumed."""
    from medssr_hub.synthesis.config import SynthesisConfig, SynthesisError
    from medssr_hub.synthesis.synthesize import Synthesizer

    row = {
        "id": "LOCAL:1",
        "name": "Zebra fever syndrome",
        "phenotypes": [{"name": "Striped rash", "frequency": 0.9}],
    }
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps(row) + "\n")
    settings = dict(
        num_questions=2,
        alpha=1.0,
        rare_generator="vignette",
        catalog=[str(extra)],
        output_dir=str(tmp_path / "o"),
    )
    Synthesizer(SynthesisConfig(**settings)).run()
    Synthesizer(SynthesisConfig(**settings)).run()  # unchanged: resumes
    extra.write_text(json.dumps({**row, "name": "Zebra fever syndrome, type 2"}) + "\n")
    with pytest.raises(SynthesisError, match=r"other settings \(inputs\); use another output folder"):
        Synthesizer(SynthesisConfig(**settings)).run()


def test_every_stage_fingerprints_settings_endpoint_engine_and_inputs_through_one_helper(tmp_path):
    """config.resume_fingerprint, as each stage calls it: a setting, the endpoint's served model, the vLLM
    engine's dtype and a local input file's content each make another run."""
    from medssr_hub.evaluation.evaluate import EvalConfig
    from medssr_hub.labeling.label import LabelConfig
    from medssr_hub.resume import resume_fingerprint
    from medssr_hub.synthesis.config import SynthesisConfig

    server = {"base_url": "http://127.0.0.1:9", "model": "org/a"}
    label = LabelConfig(chat=True, backend="endpoint", endpoint=server)
    assert label.fingerprint() == resume_fingerprint(
        label, keep=[k for k in label.fingerprint() if k != "endpoint"]
    )
    other_model = LabelConfig(chat=True, backend="endpoint", endpoint={**server, "model": "org/b"})
    assert other_model.fingerprint() != label.fingerprint()
    evaluation = EvalConfig(chat=True, backend="vllm")
    assert (
        EvalConfig(chat=True, backend="vllm", vllm={"dtype": "float32"}).fingerprint()
        != evaluation.fingerprint()
    )
    assert EvalConfig(chat=True, backend="vllm", vllm={"gpu_memory_utilization": 0.5}).fingerprint() == (
        evaluation.fingerprint()
    )  # where it runs is not what it computes
    catalogue = tmp_path / "extra.tsv"
    catalogue.write_text("ORPHA:1\tA disease\tHP:0001250\n")
    synthesis = SynthesisConfig(catalog=[str(catalogue)], rare_generator="vignette", alpha=1.0)
    before = synthesis.fingerprint()
    catalogue.write_text("ORPHA:1\tA disease\tHP:0001251\n")
    assert synthesis.fingerprint() != before and set(before["inputs"]) == {str(catalogue)}
