"""Every field of every stage config has help text that `--help` prints, and every key the shipped recipes
set is such a field: a YAML comment is never a field's only documentation."""

import dataclasses
import re

import pytest
import yaml

from medssr_hub.cli import STAGES, main, stage_config
from medssr_hub.config import ConfigParser, config_parts
from medssr_hub.evaluation.evaluate import EvalConfig
from medssr_hub.evaluation.leaderboard import LeaderboardConfig
from medssr_hub.field_help import arg, documented
from medssr_hub.labeling.label import LabelConfig
from medssr_hub.runs.ablation import AblationConfig, AblationRows
from medssr_hub.runs.settings import RunSettings
from medssr_hub.synthesis.config import SynthesisConfig
from medssr_hub.training import grpo, sft
from tests.support.paths import ROOT

# Each dataclass a subcommand reads, once (the ablation reads the run settings and its rows together).
CONFIGS = list(dict.fromkeys(part for name in STAGES for part in config_parts(stage_config(name))))
TRAINING = {"grpo": grpo.CONFIG_TYPES, "sft": sft.CONFIG_TYPES}
# Which config each shipped recipe folder is read as (recipes/lighteval holds lighteval's own YAML).
RECIPES = {
    "synthesis": (SynthesisConfig,),
    "labeling": (LabelConfig,),
    "evaluation": (EvalConfig,),
    "leaderboard": (LeaderboardConfig,),
    "smollm2": None,  # training: grpo or sft by file name
    "qwen3-8b-base": None,
    "llama3.1-8b": None,
    "ablation": AblationConfig.PARTS,
}
# demo.yaml's nested steps, each read as a stage's config.
DEMO_STEPS = {
    "synthesis": (SynthesisConfig,),
    "heldout": (SynthesisConfig,),
    "keyed_eval": (SynthesisConfig,),
    "labeling": (LabelConfig,),
    "stage1": grpo.CONFIG_TYPES,
    "stage2": grpo.CONFIG_TYPES,
    "sft": sft.CONFIG_TYPES,  # the ablation's
}


def helps(types) -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for t in types for f in dataclasses.fields(t) if f.init}


def words(text: str) -> str:
    """Text without its whitespace: argparse wraps help at spaces and after hyphens."""
    return "".join(text.split())


def test_stage_configs_document_every_field():
    ours = {RunSettings, AblationRows, SynthesisConfig, LabelConfig, EvalConfig, LeaderboardConfig}
    assert ours <= set(CONFIGS)
    counted = 0
    for cls in CONFIGS:
        for name, text in helps([cls]).items():
            assert len(text.split()) >= 3, f"{cls.__name__}.{name}: {text!r}"
            counted += 1
    assert counted >= 118, counted  # the 105 the issue counted, plus the fields added since
    for types in TRAINING.values():  # TRL's and ours
        undocumented = [name for name, text in helps(types).items() if not text.strip()]
        assert not undocumented, undocumented


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_help_prints_every_fields_text(cls):
    printed = words(ConfigParser([cls]).format_help())
    for name, text in helps([cls]).items():
        assert f"--{name}" in printed, name
        assert words(text) in printed, (name, text)


def test_stage_help_on_the_command_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["synthesize", "--help"])
    assert exit_info.value.code == 0
    printed = words(capsys.readouterr().out)
    assert words(helps([SynthesisConfig])["chunk_size"]) in printed
    assert (
        words("null: every file in the benchmarks folder") in printed
    )  # what null does, for `decontaminate`


def test_ablation_help_lists_the_run_settings_and_its_rows_with_its_own_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["ablation", "--help"])
    text = capsys.readouterr().out
    titles = [line for line in text.splitlines() if line.endswith("(medssr-hub):")]
    assert titles == ["RunSettings (medssr-hub):", "AblationRows (medssr-hub):"]
    assert "medssr-hub/ablation-leaderboard" in words(text) and "outputs/ablation" in text
    assert "demo-leaderboard" not in text


def test_a_field_without_help_is_refused_at_definition():
    with pytest.raises(TypeError, match="fields without help text: window"):

        @documented
        @dataclasses.dataclass
        class Bad:
            seed: int = 1  # shared text
            window: int = 3  # none

    with pytest.raises(TypeError, match="'%'"):

        @documented
        @dataclasses.dataclass
        class Percent:
            share: float = arg("the share in %", 0.5)


def recipe_files():
    for folder, types in RECIPES.items():
        for path in sorted((ROOT / "recipes" / folder).glob("*.yaml")):
            if path.stem == "evaluation":
                yield path, (EvalConfig,)
            else:
                yield path, types or TRAINING["sft" if path.stem == "sft" else "grpo"]
    yield ROOT / "recipes" / "demo.yaml", (RunSettings,)


@pytest.mark.parametrize("path,types", list(recipe_files()), ids=lambda v: getattr(v, "name", ""))
def test_every_recipe_key_is_a_documented_field(path, types):
    data = yaml.safe_load(path.read_text())
    documented_fields = helps(types)
    commented = set(re.findall(r"^(\w+):[^#\n]*#", path.read_text(), flags=re.M))  # top-level keys
    for key, value in data.items():
        assert documented_fields.get(key, "").strip(), f"{path.name}: {key} has no help"
        if types[0] is RunSettings and key in DEMO_STEPS and value:
            inner = helps(DEMO_STEPS[key])
            for sub in value:
                assert sub == "config" or inner.get(sub, "").strip(), f"{path.name}: {key}.{sub} has no help"
    assert commented <= set(documented_fields)


def test_stage_help_lists_our_fields_first_then_trls_each_once(capsys):
    with pytest.raises(SystemExit):
        main(["stage1", "--help"])
    text = capsys.readouterr().out
    titles = [line for line in text.splitlines() if re.fullmatch(r"\S.* \((medssr-hub|trl)\):", line)]
    assert titles == ["MedSSRScriptArguments (medssr-hub):", "GRPOConfig (trl):", "ModelConfig (trl):"]
    assert len(text.splitlines()[0]) < 100  # the usage line, not every flag
    for t in grpo.CONFIG_TYPES:
        for f in dataclasses.fields(t):
            if f.init:
                assert len(re.findall(rf"^  --{f.name} ", text, re.M)) == 1, f.name
    # TRL's own help, by its first sentence: its beta's full help is a paragraph.
    beta = re.search(r"^  --beta VALUE +(.*?)\(default", text, re.M | re.S).group(1)
    assert len(" ".join(beta.split())) <= 200
