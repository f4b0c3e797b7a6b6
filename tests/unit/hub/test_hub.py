"""Publishing and reading back versions: the local hub, and the real huggingface_hub client over HTTP."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import load_dataset

from medssr_hub.hub import HubError, LocalHub, VersionExistsError, open_hub, publish
from medssr_hub.hub.cards import card_problems, dataset_card, model_card, redact
from medssr_hub.records import load_records, records_to_dataset
from tests.support.fake_hub import FakeHub

TOKEN = "hf_" + "T0ken" * 6


@pytest.fixture
def fake_hub():
    hub = FakeHub(token=TOKEN)
    yield hub
    hub.close()


@pytest.fixture
def dataset_folder(tmp_path, benchmarks_dir):
    """A real dataset folder: 40 PubMedQA records as parquet, plus a card."""
    records, _ = load_records(benchmarks_dir / "pubmedqa.json")
    folder = tmp_path / "artefact"
    records_to_dataset(records[:40]).to_parquet(folder / "data" / "train-00000.parquet")
    return folder, records[:40]


def card_for(folder, version="v1.0.0", **extra):
    return dataset_card(
        repo_id="medssr/pubmedqa-sample",
        version=version,
        pretty_name="PubMedQA sample",
        summary="40 questions.",
        stage="test",
        num_rows=40,
        data_files={"train": "data/train-*.parquet"},
        provenance={"seed": 42},
        counts={"rows": 40},
        **({"config": {"alpha": 0.3, "hub_token": TOKEN}} | extra),
    )


def rows_at(folder):
    files = sorted(str(p) for p in folder.rglob("*.parquet"))
    return load_dataset("parquet", data_files=files, split="train").to_list()


# -- the local hub ------------------------------------------------------------------------------------
def test_local_versions_are_immutable_and_pinned(tmp_path, dataset_folder):
    folder, records = dataset_folder
    hub = LocalHub(tmp_path / "hub")
    first = publish(folder, "medssr/pubmedqa-sample", "v1.0.0", card=card_for(folder), hub=str(hub.root))
    assert first.created
    again = hub.publish(folder, "medssr/pubmedqa-sample", "v1.0.0")
    assert not again.created and again.commit == first.commit
    rows_v1 = rows_at(hub.pull("medssr/pubmedqa-sample", "v1.0.0"))

    records_to_dataset(records[:10]).to_parquet(folder / "data" / "train-00000.parquet")
    with pytest.raises(VersionExistsError, match="immutable"):
        hub.publish(folder, "medssr/pubmedqa-sample", "v1.0.0")
    second = hub.publish(folder, "medssr/pubmedqa-sample", "v1.1.0")
    assert second.commit != first.commit
    assert hub.versions("medssr/pubmedqa-sample") == {"v1.0.0": first.commit, "v1.1.0": second.commit}

    # A pinned reader gets the same rows every time, whatever was published after.
    assert rows_at(hub.pull("medssr/pubmedqa-sample", "v1.0.0")) == rows_v1
    assert len(rows_v1) == 40 and len(rows_at(hub.pull("medssr/pubmedqa-sample", "main"))) == 10
    assert len(rows_at(hub.pull("medssr/pubmedqa-sample", first.commit[:8]))) == 40
    loaded, _ = load_records("medssr/pubmedqa-sample", revision="v1.0.0", hub=str(hub.root))
    assert loaded == records
    with pytest.raises(HubError, match="no revision 'v9.9.9'"):
        hub.pull("medssr/pubmedqa-sample", "v9.9.9")


def test_local_branch_publish_leaves_main_alone(tmp_path, dataset_folder):
    folder, _ = dataset_folder
    hub = LocalHub(tmp_path)
    main = hub.publish(folder, "medssr/m", "v1.0.0", repo_type="model")
    (folder / "step.txt").write_text("step 100")
    step = hub.publish(folder, "medssr/m", "v1.0.1", repo_type="model", branch="step-100")
    assert hub.resolve("medssr/m", "main", "model") == main.commit
    assert hub.resolve("medssr/m", "step-100", "model") == step.commit
    # A branch-only publish (a training checkpoint) moves its branch and tags nothing.
    (folder / "step.txt").write_text("step 200")
    ckpt = hub.publish(folder, "medssr/m", None, repo_type="model", branch="checkpoint-200")
    assert ckpt.version is None and ckpt.created
    assert hub.resolve("medssr/m", "checkpoint-200", "model") == ckpt.commit
    assert set(hub.versions("medssr/m", "model")) == {"v1.0.0", "v1.0.1"}
    assert (hub.pull("medssr/m", "checkpoint-200", "model") / "step.txt").read_text() == "step 200"
    with pytest.raises(ValueError, match="needs a branch"):
        hub.publish(folder, "medssr/m", None, repo_type="model")


def test_local_crash_mid_publish_leaves_no_version(tmp_path, dataset_folder, monkeypatch):
    folder, _ = dataset_folder
    hub = LocalHub(tmp_path)
    hub.publish(folder, "medssr/ds", "v1.0.0")
    (folder / "extra.txt").write_text("more")

    import medssr_hub.hub.local as local

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(local, "atomic_write_json", crash)
    with pytest.raises(OSError, match="disk full"):
        hub.publish(folder, "medssr/ds", "v1.1.0")
    monkeypatch.undo()
    assert set(hub.versions("medssr/ds")) == {"v1.0.0"}
    assert not list((tmp_path / "datasets/medssr/ds/snapshots").glob(".tmp-*"))
    assert hub.publish(folder, "medssr/ds", "v1.1.0").created  # retrying succeeds


def test_bad_arguments(tmp_path, dataset_folder):
    folder, _ = dataset_folder
    hub = LocalHub(tmp_path)
    with pytest.raises(ValueError, match="v1.2.3"):
        hub.publish(folder, "medssr/ds", "1.0")
    with pytest.raises(ValueError, match="ORG/NAME"):
        hub.publish(folder, "no-org", "v1.0.0")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="nothing to publish"):
        hub.publish(tmp_path / "empty", "medssr/ds", "v1.0.0")
    with pytest.raises(HubError, match="not in the local hub"):
        hub.pull("medssr/none")


def _written_outside(tmp_path, artefact):
    """Every file under tmp_path that is not part of the published folder."""
    return [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_relative_to(artefact)]


ESCAPES = [
    "../..",
    "../escaped",
    "a/..",
    "./a",
    "/abs/path",
    "a\\b/c",
    "a/b\n",
    "a/\x00b",
    "a//b",
    "a/.b",
    "",
]


@pytest.mark.parametrize("repo_id", ESCAPES)
def test_repo_ids_cannot_leave_the_hub(tmp_path, dataset_folder, repo_id):
    """The probes of issue 21: `publish --repo-id ../..` wrote refs.json, .lock and snapshots/ into the hub
    root's parent, and `pull ../..` read from outside. Every such id is refused before anything is written."""
    folder, _ = dataset_folder
    root = tmp_path / "hub"
    hub = LocalHub(root)
    with pytest.raises(ValueError, match="ORG/NAME"):
        hub.publish(folder, repo_id, "v1.0.0")
    with pytest.raises(ValueError, match="ORG/NAME"):
        hub.pull(repo_id)
    assert _written_outside(tmp_path, folder) == []


def test_cli_refuses_escaping_names_with_exit_2(tmp_path, dataset_folder):
    folder, _ = dataset_folder
    cli = [sys.executable, "-m", "medssr_hub.cli"]
    hub = tmp_path / "inner" / "hub"
    for args in (
        ["publish", str(folder), "--repo-id", "../..", "--version", "v1.0.0", "--hub", str(hub)],
        ["publish", str(folder), "--repo-id", "../escaped", "--version", "v1.0.0", "--hub", str(hub)],
        [
            "publish",
            str(folder),
            "--repo-id",
            "a/b",
            "--branch",
            "../x",
            "--version",
            "v1.0.0",
            "--hub",
            str(hub),
        ],
        ["pull", "../..", "--hub", str(hub)],
    ):
        out = subprocess.run([*cli, *args], capture_output=True, text=True)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert _written_outside(tmp_path, folder) == []


def test_a_symlinked_repo_folder_is_no_way_out(tmp_path, dataset_folder):
    folder, _ = dataset_folder
    hub = LocalHub(tmp_path / "hub")
    (tmp_path / "hub" / "datasets" / "org").mkdir(parents=True)
    (tmp_path / "hub" / "datasets" / "org" / "repo").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(ValueError, match="outside the hub root"):
        hub.publish(folder, "org/repo", "v1.0.0")


# -- cards ----------------------------------------------------------------------------------------------
def test_redact_hides_credentials_and_keeps_token_counts_and_the_tokenizer():
    config = {"hub_token": "x", "HF_TOKEN": "x", "token": "x", "access-token": "x", "api_key": "x",
              "OPENAI_API_KEY": "x", "client_secret": "x", "password": "x", "headers": {"Authorization": "x"},
              "max_tokens": 96, "eval_max_tokens": 16, "num_tokens": 3, "tokenizer": "embedded",
              "include_num_input_tokens_seen": "no"}  # fmt: skip
    shown = redact(config)
    assert {k for k, v in shown.items() if v == "<redacted>"} == {
        "hub_token", "HF_TOKEN", "token", "access-token", "api_key", "OPENAI_API_KEY", "client_secret", "password",
    }  # fmt: skip
    assert shown["headers"] == {"Authorization": "<redacted>"} and shown["max_tokens"] == 96


def test_a_stage_release_publishes_its_config_without_secrets_or_local_paths(tmp_path):
    """`StageRelease.of` (what `medssr_config.json` holds) goes through `published_config`, as results and
    cards do: an endpoint's own token is redacted, its server and local paths masked."""
    from medssr_hub.hub import StageRelease
    from medssr_hub.labeling.label import LabelConfig

    cfg = LabelConfig(
        chat=True, input=str(tmp_path), output_dir=str(tmp_path / "out"), publish_repo="medssr/l",
        backend="endpoint", endpoint={"base_url": "http://10.0.0.7:8000", "token": "sk-secret", "route": "chat"},
    )  # fmt: skip
    config = StageRelease.of(cfg).config
    assert config["endpoint"] == {"base_url": "<server>", "token": "<redacted>", "route": "chat"}
    assert "output_dir" not in config and config["input"] == "<local path>"
    assert "sk-secret" not in json.dumps(config)


def test_cards_carry_metadata_and_never_secrets(dataset_folder, fake_hub, monkeypatch):
    folder, _ = dataset_folder
    card = card_for(folder, rejections={"no_options": 2}, rare_ratio=0.031)
    text = str(card)
    assert TOKEN not in text and "<redacted>" in text
    assert card.data.size_categories == ["n<1K"] and card.data.license == "apache-2.0"
    assert "| no_options | 2 |" in text and "3.1%" in text
    assert card_problems(card, folder) == []
    assert card_problems(card, folder / "data") == [
        "data_files path 'data/train-*.parquet' matches no file in " + str(folder / "data")
    ]
    leaky = card_for(folder, evaluation=f"token {TOKEN}")
    assert "shaped like an HF token" in card_problems(leaky)[0]
    with pytest.raises(ValueError, match="not publishable"):
        publish(folder, "medssr/x", "v1.0.0", card=leaky, hub=str(folder.parent / "hub"))

    # The Hub's own metadata validation (served by the test hub) accepts ours and refuses a broken one.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", fake_hub.url)
    card.validate("dataset")
    card.data.size_categories = ["huge"]
    with pytest.raises(ValueError, match="size_categories"):
        card.validate("dataset")
    model = model_card(
        repo_id="medssr/m",
        version="v1.0.0",
        pretty_name="m",
        summary="s",
        stage="stage1",
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        datasets=[("medssr/ds", "v1.0.0")],
    )
    model.validate("model")
    assert "`medssr/ds` @ `v1.0.0`" in str(model) and card_problems(model) == []


def test_a_cards_config_block_depends_on_values_not_on_field_order(dataset_folder):
    folder, _ = dataset_folder
    one = card_for(folder, config={"model": "m", "alpha": 0.3, "vllm": {"b": 1, "a": 2}})
    other = card_for(folder, config={"vllm": {"a": 2, "b": 1}, "alpha": 0.3, "model": "m"})
    assert str(one) == str(other)
    assert "alpha: 0.3\nmodel: m\nvllm:\n  a: 2\n  b: 1\n" in str(one)
    assert str(card_for(folder, config={"alpha": 0.4, "model": "m"})) != str(one)


# -- the real client over HTTP ----------------------------------------------------------------------
def test_remote_publish_pull_and_immutability(tmp_path, dataset_folder, fake_hub):
    folder, records = dataset_folder
    first = publish(folder, "medssr/ds", "v1.0.0", card=card_for(folder), hub=fake_hub.url, token=TOKEN)
    assert first.created and first.location == f"{fake_hub.url}/datasets/medssr/ds"
    hub = open_hub(fake_hub.url, token=TOKEN)
    ckpt = hub.publish(folder, "medssr/ds", None, branch="checkpoint-1")  # branch only: no tag
    assert ckpt.version is None and set(hub.versions("medssr/ds")) == {"v1.0.0"}
    assert (hub.pull("medssr/ds", "checkpoint-1") / "README.md").exists()
    assert not hub.publish(folder, "medssr/ds", "v1.0.0").created
    (folder / "notes.txt").write_text("v2 only")
    (folder / "data" / "train-00000.parquet").unlink()
    records_to_dataset(records[:5]).to_parquet(folder / "data" / "train-00000.parquet")
    with pytest.raises(VersionExistsError):
        hub.publish(folder, "medssr/ds", "v1.0.0")
    second = hub.publish(folder, "medssr/ds", "v2.0.0")
    assert set(hub.versions("medssr/ds")) == {"v1.0.0", "v2.0.0"}

    v1 = hub.pull("medssr/ds", "v1.0.0", output=tmp_path / "v1")
    v2 = hub.pull("medssr/ds", "v2.0.0", output=tmp_path / "v2")
    assert len(rows_at(v1)) == 40 and len(rows_at(v2)) == 5
    assert not (v1 / "notes.txt").exists() and (v2 / "notes.txt").read_text() == "v2 only"
    assert rows_at(hub.pull("medssr/ds", "v1.0.0", output=tmp_path / "v1-again")) == rows_at(v1)
    assert json.loads((v1 / "medssr_manifest.json").read_text())["content_id"] == first.content_id
    assert second.commit != first.commit
    loaded, _ = load_records("medssr/ds", revision="v1.0.0", hub=fake_hub.url)
    assert loaded == records


def test_token_from_env_is_sent_never_logged_or_written(
    tmp_path, dataset_folder, fake_hub, monkeypatch, caplog
):
    folder, _ = dataset_folder
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with caplog.at_level(logging.DEBUG):
        publish(folder, "medssr/ds", "v1.0.0", card=card_for(folder), hub=fake_hub.url)
        pulled = open_hub(fake_hub.url).pull("medssr/ds", "v1.0.0", output=tmp_path / "pulled")
    assert f"Bearer {TOKEN}" in fake_hub.auth_headers
    assert TOKEN not in caplog.text
    for path in [*pulled.rglob("*"), *folder.rglob("*")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    with pytest.raises(HubError, match="401"):
        open_hub(fake_hub.url, token="hf_wrongwrongwrongwrongwrong").publish(folder, "medssr/other", "v1.0.0")


@pytest.mark.parametrize("fault", [500, "drop"])
def test_failed_commit_leaves_no_version_and_retry_succeeds(dataset_folder, fake_hub, fault):
    folder, _ = dataset_folder
    hub = open_hub(fake_hub.url, token=TOKEN)
    fake_hub.faults["commit"] = [fault]
    with pytest.raises(
        HubError, match=rf"publishing dataset medssr/ds@v1.0.0 on {fake_hub.url} failed.*retrying is safe"
    ):
        hub.publish(folder, "medssr/ds", "v1.0.0")
    assert hub.versions("medssr/ds") == {}
    assert hub.publish(folder, "medssr/ds", "v1.0.0").created
    fake_hub.faults["tag"] = [503]
    (folder / "more.txt").write_text("x")
    with pytest.raises(HubError, match="503"):
        hub.publish(folder, "medssr/ds", "v1.1.0")
    assert set(hub.versions("medssr/ds")) == {"v1.0.0"}
    assert hub.publish(folder, "medssr/ds", "v1.1.0").created


def test_cli_publish_and_pull_honour_hf_endpoint(tmp_path, dataset_folder, fake_hub):
    folder, _ = dataset_folder
    env = {**os.environ, "HF_ENDPOINT": fake_hub.url, "HF_TOKEN": TOKEN}
    cli = [sys.executable, "-m", "medssr_hub.cli"]
    out = subprocess.run(
        [*cli, "publish", str(folder), "--repo-id", "medssr/ds", "--version", "v1.0.0", "--hub", "hf"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "medssr/ds@v1.0.0 published" in out.stdout and TOKEN not in out.stdout + out.stderr
    assert ("POST", "/api/datasets/medssr/ds/commit/main") in fake_hub.requests
    out = subprocess.run(
        [*cli, "pull", "medssr/ds", "--revision", "v1.0.0", "--hub", "hf", "--output", str(tmp_path / "o")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert (tmp_path / "o" / "data" / "train-00000.parquet").exists()
    local = tmp_path / "localhub"
    subprocess.run(
        [*cli, "publish", str(folder), "--repo-id", "medssr/ds", "--version", "v1.0.0", "--hub", str(local)],
        check=True,
        capture_output=True,
    )
    bad = subprocess.run(
        [*cli, "pull", "medssr/ds", "--revision", "v7.0.0", "--hub", str(local)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "no revision 'v7.0.0'" in bad.stderr


def test_two_publishes_of_one_version_leave_the_tag_and_main_on_one_content(
    tmp_path, dataset_folder, fake_hub
):
    """Two processes publish different content as v1.0.0 at once (their first commits held until both have
    arrived): one wins the tag, the other is refused, and main holds the tagged content, not the loser's."""
    folder, records = dataset_folder
    other = tmp_path / "other"
    records_to_dataset(records[:5]).to_parquet(other / "data" / "train-00000.parquet")
    fake_hub.together["commit"] = 2
    env = {**os.environ, "HF_TOKEN": TOKEN}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "medssr_hub.cli", "publish", str(f), "--repo-id", "medssr/ds"]
            + ["--version", "v1.0.0", "--hub", fake_hub.url],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in (folder, other)
    ]
    results = [(run.wait(timeout=300), run.stderr.read()) for run in runs]
    assert sorted(code for code, _ in results) == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "already published" in refused and "other content" in refused and "Traceback" not in refused
    repo = fake_hub.repos[("dataset", "medssr/ds")]
    manifest = lambda oid: json.loads(repo.commits[oid]["medssr_manifest.json"])  # noqa: E731
    assert manifest(repo.branches["main"])["content_id"] == manifest(repo.tags["v1.0.0"])["content_id"]
    assert set(repo.branches) == {"main"}  # the staging branches are gone


def test_a_publish_killed_mid_copy_leaves_no_litter(tmp_path, dataset_folder):
    """kill -9 during the snapshot copy leaves a `.tmp-*` folder; the next publish of that repo sweeps it
    (and publishes), and so would the next pull."""
    folder, _ = dataset_folder
    for i in range(20):  # files enough for the copy to be caught mid-way
        (folder / f"extra-{i}.txt").write_text("x" * 1000)
    root = tmp_path / "hub"
    script = (
        "import shutil, sys, time\n"
        "from medssr_hub.hub import LocalHub\n"
        "copy = shutil.copyfile\n"
        "def slow(src, dst, **kw):\n"
        "    time.sleep(0.5)\n"
        "    return copy(src, dst, **kw)\n"
        "shutil.copyfile = slow\n"
        f"LocalHub({str(root)!r}).publish({str(folder)!r}, 'medssr/ds', 'v1.0.0')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    snapshots = root / "datasets" / "medssr" / "ds" / "snapshots"
    deadline = time.time() + 60
    while time.time() < deadline and not list(snapshots.glob(".tmp-*/*")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(snapshots.glob(".tmp-*")), "the kill should land mid-copy"
    result = LocalHub(root).publish(folder, "medssr/ds", "v1.0.0")
    assert result.created and not list(snapshots.glob(".tmp-*"))
    assert sorted(p.name for p in snapshots.iterdir()) == [result.commit]


def test_publish_refuses_a_link_that_leads_outside_the_folder(tmp_path, dataset_folder):
    """`ln -s /etc/passwd art/leak.txt; medssr-hub publish art ...`: one line, exit 2, nothing published.
    A link to a file inside the folder is carried as that file."""
    folder, _ = dataset_folder
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the hub\n")
    (folder / "data" / "copy.parquet").symlink_to(folder / "data" / "train-00000.parquet")  # inside: fine
    hub = tmp_path / "hub"
    publish(folder, "medssr/inside-link", "v1.0.0", card=card_for(folder), hub=str(hub))
    pulled = LocalHub(hub).pull("medssr/inside-link", "v1.0.0")
    assert (pulled / "data" / "copy.parquet").read_bytes() == (
        folder / "data" / "train-00000.parquet"
    ).read_bytes()

    (folder / "leak.txt").symlink_to(secret)
    cli = [sys.executable, "-m", "medssr_hub.cli", "publish", str(folder), "--repo-id", "medssr/leak",
           "--version", "v1.0.0", "--hub", str(hub)]  # fmt: skip
    out = subprocess.run(cli, capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "leak.txt leads outside the folder" in out.stderr
    assert not LocalHub(hub).exists("medssr/leak") and "not for the hub" not in "".join(
        p.read_text(errors="ignore") for p in hub.rglob("*") if p.is_file()
    )


def test_a_hand_edited_ref_never_becomes_a_path(tmp_path, dataset_folder):
    """refs.json naming "../../../../outside" as a tag's commit: pull stops in one line (exit 2), and
    nothing outside the hub is read into --output."""
    folder, _ = dataset_folder
    hub = tmp_path / "hub"
    publish(folder, "medssr/refs", "v1.0.0", card=card_for(folder), hub=str(hub))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "planted.txt").write_text("planted")
    refs_file = hub / "datasets" / "medssr" / "refs" / "refs.json"
    refs = json.loads(refs_file.read_text())
    refs["tags"]["v1.0.0"] = "../../../../outside"
    refs_file.write_text(json.dumps(refs))
    with pytest.raises(HubError, match="not a commit id"):
        LocalHub(hub).pull("medssr/refs", "v1.0.0")
    cli = [sys.executable, "-m", "medssr_hub.cli", "pull", "medssr/refs", "--revision", "v1.0.0", "--hub", str(hub),
           "--output", str(tmp_path / "got")]  # fmt: skip
    out = subprocess.run(cli, capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "not a commit id" in out.stderr and not (tmp_path / "got" / "planted.txt").exists()


@pytest.mark.parametrize("field", ["etag", "sha"])
def test_a_hostile_hub_answer_never_becomes_a_path(tmp_path, dataset_folder, fake_hub, field):
    """A hub answering a download's ETag, or a revision's commit, with "../../.." and a target: pull stops
    naming what it was sent, and nothing is written there (huggingface_hub 2.4.0 would join either into
    a cache path unchecked)."""
    folder, _ = dataset_folder
    publish(folder, "medssr/hostile", "v1.0.0", card=card_for(folder), hub=fake_hub.url, token=TOKEN)
    target = tmp_path / "planted"
    fake_hub.hostile[field] = "../" * 12 + str(target).lstrip("/")
    with pytest.raises(HubError, match="not a (hex digest|commit id)"):
        open_hub(fake_hub.url, token=TOKEN).pull("medssr/hostile", "v1.0.0", output=tmp_path / "got")
    assert not target.exists() and not list(tmp_path.glob("planted*"))


@pytest.mark.parametrize("output", [False, True])
def test_a_download_cut_short_is_an_error_naming_the_file_and_leaves_no_partial_file(
    tmp_path, dataset_folder, fake_hub, output
):
    """A hub sending a file without Content-Length and cut in half (huggingface_hub cannot tell): the pull
    checks every file against the version's manifest, names the one that differs, and removes it; once the
    hub answers whole again, the same pull reads the whole file."""
    folder, records = dataset_folder
    publish(folder, "medssr/cut", "v1.0.0", card=card_for(folder), hub=fake_hub.url, token=TOKEN)
    fake_hub.hostile["truncate"] = "data/train-00000.parquet"
    hub, where = open_hub(fake_hub.url, token=TOKEN), (tmp_path / "got" if output else None)
    with pytest.raises(HubError, match=r"data/train-00000\.parquet has [\d,]+ bytes, the manifest says"):
        hub.pull("medssr/cut", "v1.0.0", output=where)
    cache = tmp_path / "got" if output else Path(os.environ["HF_HUB_CACHE"])
    whole = (folder / "data" / "train-00000.parquet").stat().st_size
    partial = [p for p in cache.rglob("*") if p.is_file() and p.stat().st_size == whole // 2]
    assert not partial, partial  # no half file under any name
    del fake_hub.hostile["truncate"]
    got = hub.pull("medssr/cut", "v1.0.0", output=where)
    assert len(load_records(got)[0]) == len(records)


# Runs the CLI and reports its own peak memory (KiB) on stdout: VmHWM, since ru_maxrss keeps the forking
# parent's peak across exec (pytest's own, here).
PEAK = (
    "import re, sys; from medssr_hub.cli import main; code = main(sys.argv[1:]); "
    "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)); sys.exit(code)"
)


@pytest.mark.parametrize("how,says", [
    ("trickle", "took longer than 3 s"),
    ("endless", "sent more than 16,000,000 bytes"),
    ("gzip_bomb", "sent more than 16,000,000 bytes (decoded)"),
])  # fmt: skip
def test_a_hub_answer_without_end_is_cut_at_its_bound(tmp_path, dataset_folder, fake_hub, how, says):
    """Repo info trickled a byte at a time, streamed without end, or a gzip bomb (1 MB -> 1 GiB): `pull`
    ends within its deadline (3 s here) with one line and exit 2, in under 1 GB of memory."""
    folder, _ = dataset_folder
    publish(folder, "medssr/bounded", "v1.0.0", card=card_for(folder), hub=fake_hub.url, token=TOKEN)
    fake_hub.hostile["info"] = how
    env = {
        **os.environ,
        "MEDSSR_REQUEST_DEADLINE": "3",
        "MEDSSR_MAX_RESPONSE_BYTES": "16000000",
        "HF_TOKEN": TOKEN,
    }
    cli = [
        "pull",
        "medssr/bounded",
        "--revision",
        "v1.0.0",
        "--hub",
        fake_hub.url,
        "--output",
        str(tmp_path / "got"),
    ]
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *cli], env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - start
    errors = [line for line in done.stderr.splitlines() if line.startswith("medssr-hub: error:")]
    assert done.returncode == 2 and len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert says in errors[0] and TOKEN not in done.stderr
    assert elapsed < 3 + 30  # the deadline, plus the interpreter's start and huggingface_hub's own retries
    assert int(done.stdout.split()[-1]) < 2**20  # KiB: under 1 GiB at its peak


def test_a_listing_that_points_elsewhere_never_gets_the_token(tmp_path, dataset_folder, fake_hub):
    """A hub's tree listing answering `Link: <other origin>; rel="next"`: huggingface_hub follows it with
    the same headers; the other server gets the request without the token, and the pull still completes."""
    import http.server
    import threading

    seen: list[str | None] = []

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            body = b"[]"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        folder, _ = dataset_folder
        publish(folder, "medssr/paged", "v1.0.0", card=card_for(folder), hub=fake_hub.url, token=TOKEN)
        fake_hub.hostile["next_page"] = f"http://127.0.0.1:{other.server_address[1]}/api/page2"
        pulled = open_hub(fake_hub.url, token=TOKEN).pull("medssr/paged", "v1.0.0", output=tmp_path / "got")
    finally:
        other.shutdown()
        other.server_close()
    assert seen and seen == [None] * len(seen)  # followed, without the token
    assert (pulled / "data" / "train-00000.parquet").exists()
    assert any(TOKEN in h for h in fake_hub.auth_headers)  # the configured hub still got it
