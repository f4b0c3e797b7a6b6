"""Every stage subcommand answers bad input with exit 2 and one line naming the problem, never a traceback."""

import json
import os

import pytest

from medssr_hub.cli import main

# Per subcommand: arguments that make a valid start, a numeric field, and an input path to point nowhere.
COMMANDS = {
    "synthesize": (["--rare_generator", "vignette", "--alpha", "1.0"], "--num_questions", "--seed_data"),
    "label": (["--chat", "true"], "--n", "--input"),
    "evaluate": (["--chat", "true"], "--max_items", "--benchmarks"),
    "leaderboard": ([], "--publish_version", "--results"),
    "demo": (["--chat", "true"], "--items_per_benchmark", "--benchmarks_dir"),
    "stage1": (["--config", "recipes/smollm2/stage1.yaml"], "--max_steps", "--dataset_name"),
    "stage2": (["--config", "recipes/smollm2/stage2.yaml"], "--max_steps", "--dataset_name"),
    "sft": (["--config", "recipes/smollm2/sft.yaml"], "--max_steps", "--dataset_name"),
}
MODEL_FIELD = {
    "stage1": "--model_name_or_path",
    "stage2": "--model_name_or_path",
    "sft": "--model_name_or_path",
}


def run(capsys, *argv) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("medssr-hub: error:")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_malformed_yaml_and_unknown_keys(command, tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("alpha: [1, 2\nbeta: ]\n")
    assert "not valid YAML (line" in run(capsys, command, "--config", str(tmp_path / "bad.yaml"))
    (tmp_path / "unknown.yaml").write_text("no_such_field: 1\n")
    assert "unknown config key(s) no_such_field" in run(
        capsys, command, "--config", str(tmp_path / "unknown.yaml")
    )
    assert "no such config file" in run(capsys, command, "--config", str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_number(command, capsys):
    base, number, _ = COMMANDS[command]
    if number == "--publish_version":  # no numeric field: an empty results list instead
        assert "results" in run(capsys, command, "--output_dir", "x")
        return
    assert "invalid" in run(capsys, command, *base, number, "three")


@pytest.mark.parametrize("command", COMMANDS)
def test_missing_path(command, tmp_path, capsys, benchmarks_dir, monkeypatch):
    monkeypatch.setenv("MEDSSR_HUB_ROOT", str(tmp_path / "hub"))
    base, _, path_field = COMMANDS[command]
    missing = str(tmp_path / "missing" / "data.json")
    extra = ["--seed_generator", "llm", "--alpha", "0.0"] if command == "synthesize" else []
    out = ["--output_dir", str(tmp_path / "out")]
    line = run(capsys, command, *base, *extra, path_field, missing, *out)
    assert "missing" in line


@pytest.mark.parametrize("command", ["synthesize", "label", "evaluate", "demo", "stage1", "stage2", "sft"])
def test_unknown_model_path(command, tmp_path, capsys, benchmarks_dir, monkeypatch):
    monkeypatch.setenv("MEDSSR_HUB_ROOT", str(tmp_path / "hub"))
    monkeypatch.setenv("MEDSSR_BENCHMARKS_DIR", str(benchmarks_dir))
    data = tmp_path / "q.jsonl"
    row = {"id": "q1", "question": "Q?\nA. x\nB. y", "answer": "A", "label": "A", "reasoning": "x."}
    data.write_text(json.dumps(row) + "\n")
    base = COMMANDS[command][0]
    inputs = {
        "synthesize": ["--rare_generator", "llm", "--alpha", "1.0", "--num_questions", "1"],
        "label": ["--input", str(data)],
        "evaluate": ["--benchmarks", "medqa", "--max_items", "1"],
        "demo": [],
    }.get(command, ["--dataset_name", str(data), "--model_revision", "main"])
    line = run(
        capsys,
        command,
        *base,
        *inputs,
        MODEL_FIELD.get(command, "--model"),
        "/nonexistent/model",
        "--output_dir",
        str(tmp_path / "out"),
    )
    assert "model '/nonexistent/model': no such folder" in line


def test_a_dict_on_the_command_line_updates_the_yaml_dict_before_it_is_checked(tmp_path):
    """`--endpoint '{"base_url": ...}'` keeps the YAML's route: a base-model config stays valid."""
    from medssr_hub.config import parse_config
    from medssr_hub.errors import ConfigError
    from medssr_hub.evaluation.evaluate import EvalConfig

    config = tmp_path / "paper.yaml"
    config.write_text(
        "chat: false\nbackend: endpoint\nendpoint:\n  base_url: http://a:1\n  route: completions\n  tokenizer: t\n"
    )
    (cfg,) = parse_config([EvalConfig], ["--config", str(config), "--endpoint", '{"base_url": "http://b:2"}'])
    assert cfg.endpoint == {"base_url": "http://b:2", "route": "completions", "tokenizer": "t"}
    with pytest.raises(ConfigError, match="route to completions"):
        parse_config([EvalConfig], ["--config", str(config), "--endpoint", '{"route": "chat"}'])
    with pytest.raises(ConfigError, match="--endpoint: not a mapping"):
        parse_config([EvalConfig], ["--config", str(config), "--endpoint", "[1, 2]"])


def test_numbers_survive_a_dict_merged_from_the_command_line(tmp_path):
    """`--stage1 '{"max_steps": 1}'` merges into the YAML's dict; its 1.0e-5 stays a number (YAML 1.1
    reads the JSON form 1e-05 as a string, which once reached the optimizer)."""
    from medssr_hub.config import parse_config
    from medssr_hub.runs.settings import RunSettings

    config = tmp_path / "demo.yaml"
    config.write_text("chat: true\nstage1:\n  learning_rate: 1.0e-5\n  max_steps: 6\n")
    (cfg,) = parse_config([RunSettings], ["--config", str(config), "--stage1", '{"max_steps": 1}'])
    assert cfg.stage1 == {"learning_rate": 1e-5, "max_steps": 1}
    assert isinstance(cfg.stage1["learning_rate"], float)


def test_config_from_dict_reads_numbers_written_as_strings():
    """The demo builds training configs from YAML dicts: `5e-6` (a string to YAML 1.1) is a float there,
    as on the command line, and a word is an error naming the field."""
    from medssr_hub.config import config_from_dict
    from medssr_hub.errors import ConfigError
    from medssr_hub.training import grpo

    values = {"learning_rate": "5e-6", "max_steps": "3", "chat": True, "dataset_name": "x.json"}
    _, training, _ = config_from_dict(grpo.CONFIG_TYPES, values, yaml_file="recipes/smollm2/stage1.yaml")
    assert training.learning_rate == 5e-6 and training.max_steps == 3
    with pytest.raises(ConfigError, match="learning_rate: not a number: 'fast'"):
        config_from_dict(grpo.CONFIG_TYPES, {**values, "learning_rate": "fast"})


# Issue 21's probes: each ends in exit 2 with one line that names the problem and the thing it concerns,
# before any model is loaded. (command, arguments, files to write first, what the line must say)
PROBES = [
    ("evaluate", ["--config", "{tmp}"], {}, "not a config file"),
    (
        "evaluate",
        ["--chat", "true", "--max_tokens", "99999999999999999999"],
        {},
        "max_tokens must be at most",
    ),
    ("evaluate", ["--chat", "true", "--temperature", "nan"], {}, "temperature must be a finite number"),
    ("evaluate", ["--chat", "true", "--benchmarks", "{tmp}/empty.json"], {"empty.json": "[]"}, "empty"),
    (
        "evaluate",
        ["--chat", "true", "--benchmarks", "{tmp}/nogold.json"],
        {"nogold.json": json.dumps([{"id": "q1", "question": "Q?\nA. a\nB. b", "name": "x"}])},
        "benchmark nogold (<local path>): 1 of 1 items have no gold answer (first: q1)",
    ),
    (
        "evaluate",
        ["--chat", "true", "--backend", "endpoint", "--endpoint", '{"base_url": "notaurl"}'],
        {},
        "endpoint.base_url must be an http(s) URL",
    ),
    (
        "synthesize",
        ["--rare_generator", "vignette", "--alpha", "1.0", "--num_questions", "2000000000"],
        {},
        "num_questions must be between 1 and 10,000,000",
    ),
    ("label", ["--chat", "true", "--temperature", "inf"], {}, "temperature must be a finite number"),
    ("evaluate", ["--chat", "true", "--top_k", "-5"], {}, "top_k must be 0 (off) or a count of tokens"),
    (
        "label",
        ["--chat", "true", "--input", "{tmp}/empty.json"],
        {"empty.json": "[]"},
        "no questions to label",
    ),
    (
        "synthesize",
        ["--rare_generator", "vignette", "--publish_repo", "../.."],
        {},
        "publish_repo/publish_version",
    ),
    (
        "synthesize",
        ["--rare_generator", "vignette", "--publish_version", "v1/2"],
        {},
        "version must look like",
    ),
    ("leaderboard", ["--results", "x", "--publish_repo", "../.."], {}, "repo id must look like ORG/NAME"),
    ("evaluate", ["--chat", "true", "--output_dir", "{tmp}/afile/out"], {"afile": "x"}, "Not a directory"),
    (
        "synthesize",
        ["--rare_generator", "vignette", "--alpha", "1.0", "--output_dir", "{tmp}/afile/out"],
        {"afile": "x"},
        "Not a directory: '{tmp}/afile/out'",
    ),
    (
        "synthesize",
        [
            "--rare_generator",
            "vignette",
            "--alpha",
            "1.0",
            "--num_questions",
            "1",
            "--catalog",
            "{tmp}/c.jsonl",
        ],
        {"c.jsonl": b'{"id": "ORPHA:1", "name": "caf\xe9"}\n'},
        "{tmp}/c.jsonl:1: not UTF-8 text (invalid continuation byte at byte 30)",
    ),
    (
        "evaluate",
        ["--chat", "true", "--benchmarks", "{tmp}/noopts.json"],
        {"noopts.json": json.dumps([{"id": "q1", "question": "Q?", "answer": "A"}])},
        "no usable question in {tmp}/noopts.json: all 1 rejected: no_options 1 (first: q1)",
    ),
]
# The same, for the commands that take no config (no --output_dir is appended).
PLAIN_PROBES = [
    (["publish", "{tmp}/pub", "--repo-id", "ORG/x", "--version", "v1.0.0", "--hub", "{tmp}/afile"], "local hub root {tmp}/afile is a file, not a folder"),
    (["pull", "ORG/x", "--hub", "{tmp}/afile"], "local hub root {tmp}/afile is a file, not a folder"),
    (["pull", "ORG/y", "--output", "{tmp}/afile"], "File exists: '{tmp}/afile'"),
    (["raredis-subset", "{benchmarks}/medqa.json", "--output", "{tmp}/afile"], "File exists: '{tmp}/afile'"),
]  # fmt: skip


@pytest.mark.parametrize("command,args,files,says", PROBES, ids=[f"{p[0]}-{i}" for i, p in enumerate(PROBES)])
def test_hostile_probes_end_in_one_line(command, args, files, says, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = [] if "--output_dir" in argv else ["--output_dir", str(tmp_path / "out")]
    line = run(capsys, command, *argv, *out)
    assert says.replace("{tmp}", str(tmp_path)) in line, line


@pytest.mark.parametrize("args,says", PLAIN_PROBES, ids=[p[0][0] for p in PLAIN_PROBES])
def test_hostile_probes_of_the_plain_commands_end_in_one_line(
    args, says, tmp_path, capsys, benchmarks_dir, monkeypatch
):
    monkeypatch.setenv("MEDSSR_HUB_ROOT", str(tmp_path / "hub"))
    (tmp_path / "afile").write_text("x")
    (tmp_path / "pub").mkdir()
    (tmp_path / "pub" / "data.json").write_text('[{"id": "1"}]')
    assert main(["publish", str(tmp_path / "pub"), "--repo-id", "ORG/y", "--version", "v1.0.0"]) == 0
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{benchmarks}", str(benchmarks_dir)) for a in args]
    line = run(capsys, *argv)
    assert says.replace("{tmp}", str(tmp_path)) in line, line


def test_debug_log_level_shows_the_traceback(tmp_path, capsys):
    """One line by default; with `--log-level debug` the traceback comes first, for any error."""
    assert "Traceback" not in capsys.readouterr().err
    code = main(["--log-level", "debug", "evaluate", "--config", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback (most recent call last)" in err and "ConfigError" in err
    assert err.strip().splitlines()[-1].startswith("medssr-hub: error: ")


def test_the_project_errors_share_one_base_and_a_bug_keeps_its_traceback(monkeypatch, capsys):
    """The CLI answers the project's own errors (one base class) and the file system's with one line;
    anything else is a bug and propagates with its traceback, whatever the log level."""
    import medssr_hub.cli as cli
    from medssr_hub.errors import ConfigError, MedSSRError
    from medssr_hub.evaluation.official import OfficialFileError
    from medssr_hub.evaluation.registry import BenchmarkUnavailable
    from medssr_hub.generation import GenerationError
    from medssr_hub.hub.common import HubError
    from medssr_hub.labeling.label import LabelingError
    from medssr_hub.records import RecordFormatError
    from medssr_hub.schema import SplitNotFoundError
    from medssr_hub.synthesis.config import SynthesisError
    from medssr_hub.training.data import TrainingDataError

    for cls in (ConfigError, OfficialFileError, BenchmarkUnavailable, GenerationError, HubError, LabelingError,
                RecordFormatError, SplitNotFoundError, SynthesisError, TrainingDataError):  # fmt: skip
        assert issubclass(cls, MedSSRError), cls
    monkeypatch.setattr(cli, "run_command", lambda argv: {}["a key our code forgot"])
    with pytest.raises(KeyError):
        main(["evaluate"])
    monkeypatch.setattr(cli, "run_command", lambda argv: int("not a number"))
    with pytest.raises(ValueError):
        main(["evaluate"])
    assert "medssr-hub: error" not in capsys.readouterr().err


@pytest.fixture
def read_only(tmp_path):
    """A folder that refuses writes, as the kernel refuses them: a read-only bind mount of a writable one
    (root writes through permissions, so chmod alone would prove nothing for root), or, for a user who may
    not mount, the folder itself with its write permissions taken away."""
    import subprocess

    source, view = tmp_path / "source", tmp_path / "read-only"
    source.mkdir()
    view.mkdir()
    yield source, view  # the test fills `source` first, then calls _make_read_only
    subprocess.run(["umount", str(view)], capture_output=True)
    subprocess.run(["chmod", "-R", "u+w", str(tmp_path)])  # so that pytest can remove it


def _make_read_only(source, view) -> str:
    """Make `view` show `source` read-only; returns the error text a write there gets."""
    import errno
    import os
    import subprocess

    done = subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(view)], capture_output=True)
    if done.returncode == 0 and not _writable(view):
        return os.strerror(errno.EROFS)
    if os.geteuid() != 0:  # permissions bind every user but root: `view` is the folder, `source` a link
        view.rmdir()
        source.rename(view)
        source.symlink_to(view, target_is_directory=True)
        subprocess.run(["chmod", "-R", "a-w", str(view)], check=True)
        assert not _writable(view)
        return os.strerror(errno.EACCES)
    pytest.skip(f"root without the right to mount here: {done.stderr.decode().strip()}")


def _writable(folder) -> bool:
    try:
        (folder / ".probe").write_text("x")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def test_a_read_only_file_system_ends_in_one_line_naming_the_path(read_only, capsys, benchmarks_dir):
    """Outputs and a hub root on a read-only file system (or, for a user who may not mount, a folder
    without write permission): evaluate and synthesize outputs, a publish that would be a no-op and a new
    one; a pull still reads."""
    source, view = read_only
    data = source / "data"
    data.mkdir()
    (data / "train.json").write_text((benchmarks_dir / "medqa.json").read_text())
    assert (
        main(
            ["publish", str(data), "--repo-id", "org/x", "--version", "v1.0.0", "--hub", str(source / "hub")]
        )
        == 0
    )
    refused = _make_read_only(source, view)
    hub = str(view / "hub")
    for argv in (
        ["publish", str(data), "--repo-id", "org/x", "--version", "v1.0.0", "--hub", hub],  # a no-op
        ["publish", str(data), "--repo-id", "org/y", "--version", "v1.0.0", "--hub", hub],
        [
            "evaluate",
            "--chat",
            "true",
            "--benchmarks",
            str(data / "train.json"),
            "--output_dir",
            str(view / "e"),
        ],
        ["synthesize", "--rare_generator", "vignette", "--alpha", "1.0", "--output_dir", str(view / "s")],
    ):
        line = run(capsys, *argv)
        assert refused in line and str(view) in line, (argv[0], line)
    assert main(["pull", "org/x", "--revision", "v1.0.0", "--hub", hub]) == 0  # reading needs no write


def test_the_embedded_default_runs_without_chat_set(tmp_path, capsys, benchmarks_dir):
    """`medssr-hub evaluate --benchmarks f.json` on the embedded default model: its own chat setting."""
    from medssr_hub.evaluation.evaluate import EvalConfig
    from medssr_hub.runs.settings import RunSettings

    out = tmp_path / "eval"
    argv = ["evaluate", "--benchmarks", str(benchmarks_dir / "medqa.json"), "--max_items", "1"]
    assert main([*argv, "--num_samples", "1", "--max_tokens", "4", "--output_dir", str(out)]) == 0
    assert json.loads((out / "results.json").read_text())["config"]["chat"] is True
    assert RunSettings().chat is True
    assert "chat" in run(
        capsys, "evaluate", "--model", "org/another-model", "--output_dir", str(tmp_path / "o")
    )
    with pytest.raises(ValueError, match="chat"):
        EvalConfig(model="org/another-model")


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (BILLION_LAUGHS, "expands to more than"),  # 1 KB, 10^9 values once expanded
        ("a: &x [1, *x]\n", "nested deeper than"),  # an alias inside itself: endless depth
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),  # 5,000 levels
    ],
)
def test_yaml_bombs_are_one_line_not_memory_or_a_traceback(tmp_path, capsys, text, says):
    (tmp_path / "bomb.yaml").write_text(text)
    assert says in run(capsys, "evaluate", "--config", str(tmp_path / "bomb.yaml"))
    # The same on the command line (argparse words it as an invalid value): one line, no traceback.
    run(capsys, "evaluate", "--chat", "true", "--benchmark_paths", text)


def test_a_published_leaderboard_with_a_nan_score_or_other_columns_is_one_line(tmp_path, capsys):
    import pandas as pd

    from medssr_hub.errors import InputError
    from medssr_hub.evaluation.runs import CORE_RESULTS
    from medssr_hub.evaluation.space import check_results_table
    from medssr_hub.hub import LocalHub

    row = {c: "x" for c in CORE_RESULTS} | {"rare": False, "items": 2, "samples": 1, "mean": float("nan")}
    row |= {"std": 0.0, "parse_rate": 1.0, "recovery_rate": 0.0}
    folder = tmp_path / "board"
    (folder / "data").mkdir(parents=True)
    pd.DataFrame([row]).to_parquet(folder / "data" / "results-00000.parquet")
    LocalHub(tmp_path / "hub").publish(folder, "medssr/nan-board", "v0.1.0")
    said = run(capsys, "leaderboard", "--results", "medssr/nan-board@v0.1.0", "--hub", str(tmp_path / "hub"),
               "--output_dir", str(tmp_path / "out"))  # fmt: skip
    assert "has mean None, not a score in [0, 1]" in said
    pd.DataFrame([{"model": "m", "score": 1.0}]).to_parquet(folder / "data" / "results-00000.parquet")
    with pytest.raises(InputError, match=r"not a leaderboard's results table: it lacks \['benchmark'"):
        check_results_table("board", folder)


def test_null_on_the_command_line_means_null_for_every_field_that_may_be_null(capsys):
    from medssr_hub.config import parse_config
    from medssr_hub.evaluation.config import EvalConfig
    from medssr_hub.labeling.label import LabelConfig

    (label,) = parse_config(
        [LabelConfig], ["--config", "recipes/labeling/config_demo.yaml", "--publish_repo", "null"]
    )
    assert label.publish_repo is None  # the YAML names a repo: null unsets it, never the repo "null"
    (cfg,) = parse_config([EvalConfig], ["--chat", "true", "--max_items", "null", "--model_revision", "None"])
    assert cfg.max_items is None and cfg.model_revision is None
    assert "--n" in run(capsys, "label", "--n", "null")  # a field that cannot be null says what it takes
    from medssr_hub.training.grpo import CONFIG_TYPES

    _, training, _ = parse_config(
        list(CONFIG_TYPES), ["--config", "recipes/smollm2/stage1.yaml", "--report_to", "none"]
    )
    assert training.report_to == []  # TRL's own "none" (a string default) is not null


def test_a_missing_input_names_the_local_hub_and_what_it_holds(tmp_path):
    import subprocess
    import sys

    from medssr_hub.hub import LocalHub

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "q.jsonl").write_text('{"id": "1"}\n')
    LocalHub(tmp_path / "hub").publish(folder, "medssr/held", "v0.2.0")
    env = {**os.environ, "MEDSSR_HUB_ROOT": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "medssr_hub.cli", "label", "--input", "medssr/missing", "--input_revision", "v0.1.0",
         "--output_dir", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()[-1:]) == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert f"not in the local hub at {tmp_path / 'hub'} either, which holds: medssr/held (v0.2.0)" in last


@pytest.mark.parametrize("command", ["stage1", "stage2", "sft"])
@pytest.mark.parametrize(
    "flags", [["--push_to_hub", "true"], ["--hub_model_id", "org/model", "--hub_revision", "v1"]]
)
def test_trls_hub_fields_are_refused_naming_ours(command, flags, capsys):
    base, _, _ = COMMANDS[command]
    line = run(capsys, command, *base, *flags)
    assert all(flag.removeprefix("--") in line for flag in flags if flag.startswith("--"))
    assert "publish_repo, publish_version" in line


def test_trls_hub_fields_are_refused_in_a_runs_stage_settings_too():
    """The demo and the ablation build their stages' configs from dicts, not argv: the same refusal."""
    from medssr_hub.config import config_from_dict
    from medssr_hub.errors import ConfigError
    from medssr_hub.training import grpo

    values = {"chat": True, "dataset_name": "x.json", "push_to_hub": True}
    with pytest.raises(ConfigError, match="push_to_hub: TRL's Hub upload is not used here"):
        config_from_dict(grpo.CONFIG_TYPES, values, yaml_file="recipes/smollm2/stage1.yaml")
