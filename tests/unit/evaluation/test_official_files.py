"""`benchmarks: [medssr-official]`: the paper's own test files, fetched at the pinned commit from a server
that lays them out as GitHub's raw host does (here: the shared copies, byte-identical to the official
files, on 127.0.0.1), checked by sha256, cached, and evaluated under the registry's names."""

import hashlib

import pytest

from medssr_hub.evaluation import official
from medssr_hub.evaluation.official import OFFICIAL_COMMIT, OFFICIAL_FILES, OfficialFileMismatch
from medssr_hub.evaluation.registry import BenchmarkUnavailable, load_benchmark, parse_spec
from tests.support.servers import RawFiles


@pytest.fixture
def raw_files(benchmarks_dir, tmp_path, monkeypatch):
    server = RawFiles(benchmarks_dir)
    monkeypatch.setenv(official.BASE_URL_ENV, server.url)
    monkeypatch.setenv("MEDSSR_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_TOKEN", "hf_" + "C" * 32)  # a canary: the files are public, no token is sent
    yield server
    server.close()


def test_medssr_official_expands_to_the_repositorys_files():
    items = parse_spec(["medssr-official", "raredis"])
    assert items[-1] == "raredis"
    assert [i.removeprefix("medssr-official:") for i in items[:-1]] == list(OFFICIAL_FILES)
    assert len(OFFICIAL_FILES) == 9 and OFFICIAL_FILES["medxpertqa"].sha256 is None


def test_official_files_are_fetched_pinned_checked_and_cached(raw_files, benchmarks_dir, tmp_path):
    name, records, source = load_benchmark("medssr-official:medqa")
    assert (name, len(records)) == ("medqa", OFFICIAL_FILES["medqa"].items)
    assert source == "tdlhl/MedSSR@e560f5a:data/test_short_medqa.json"
    assert raw_files.requests[0][0] == f"/tdlhl/MedSSR/{OFFICIAL_COMMIT}/data/test_short_medqa.json"
    assert not any(k.lower() == "authorization" for _, headers in raw_files.requests for k in headers)
    cached = next((tmp_path / "cache").rglob("test_short_medqa.json"))
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == OFFICIAL_FILES["medqa"].sha256
    # Every shared file checks out with the recorded sha256 and item count.
    for path in sorted(benchmarks_dir.glob("*.json")):
        name, records, _ = load_benchmark(f"medssr-official:{path.stem}")
        assert len(records) == OFFICIAL_FILES[name].items, name
    fetched = len(raw_files.requests)
    load_benchmark("medssr-official:medqa")  # from the cache now
    assert len(raw_files.requests) == fetched
    # A cached copy that was altered is refused, naming the file.
    cached.write_bytes(cached.read_bytes()[:-1])
    with pytest.raises(OfficialFileMismatch, match="test_short_medqa.json"):
        load_benchmark("medssr-official:medqa")


def test_a_file_with_other_bytes_is_an_error_naming_it(benchmarks_dir, tmp_path, monkeypatch):
    server = RawFiles(benchmarks_dir, tamper="pubmedqa")
    monkeypatch.setenv(official.BASE_URL_ENV, server.url)
    monkeypatch.setenv("MEDSSR_HUB_CACHE", str(tmp_path / "cache"))
    try:
        with pytest.raises(
            OfficialFileMismatch, match=r"test_short_pubmedqa\.json .* not the paper's test set"
        ):
            load_benchmark("medssr-official:pubmedqa")
        assert not list((tmp_path / "cache").rglob("test_short_pubmedqa.json"))  # never cached
        # A file the server does not have (the shared folder has no Lancet) is unavailable, not fatal.
        with pytest.raises(BenchmarkUnavailable, match=r"lancet: could not fetch test_short_lancet\.json"):
            load_benchmark("medssr-official:lancet")
    finally:
        server.close()
