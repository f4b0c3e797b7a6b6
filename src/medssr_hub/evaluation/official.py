"""The paper's own test sets: `data/test_short_<name>.json` of tdlhl/MedSSR, pinned to one commit.

`benchmarks: [medssr-official]` evaluates every file the official repository ships at that commit, by
the registry's names. Each file is downloaded once into the cache
(`<cache>/benchmarks/tdlhl-MedSSR/<commit>/`), checked against the sha256 recorded here, and read from
there afterwards; a file whose bytes differ is an error naming it, never evaluated. MedXpertQA's file
has no recorded sha256: it is pinned by the commit alone.

The files come from `$MEDSSR_OFFICIAL_BASE_URL/<repo>/<commit>/data/<file>` (default: GitHub's raw file
host), so a mirror or a local server can stand in. No token is sent: the files are public.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from medssr_hub.errors import ServiceError
from medssr_hub.paths import cache_dir
from medssr_hub.utils import atomic_write_bytes

logger = logging.getLogger(__name__)

OFFICIAL = "medssr-official"
OFFICIAL_REPO = "tdlhl/MedSSR"
OFFICIAL_COMMIT = "e560f5ac483a026e8032976ce377d62e8359158a"
BASE_URL_ENV = "MEDSSR_OFFICIAL_BASE_URL"
DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class OfficialFile:
    name: str  # the registry's benchmark name
    sha256: str | None  # None: pinned by the commit alone
    items: int | None

    @property
    def file(self) -> str:
        return f"test_short_{self.name}.json"


# sha256 and item counts of the files at OFFICIAL_COMMIT.
OFFICIAL_FILES: dict[str, OfficialFile] = {
    f.name: f
    for f in (
        OfficialFile("medqa", "ecd40d098c9d05ee364b1767ff6c8fbe83b8c39d39c184383eb82fd35e0b5d27", 1273),
        OfficialFile("medmcqa", "9c44ae1cab74d5eef4f54c78c644af8bef6b93e79afb0302ebf2a1c8fbcb6ed1", 1200),
        OfficialFile("pubmedqa", "38fc1b2c83c98c73472cfea2f04ef9da181e5fb3a130b05c4c5bfceacb8cd347", 500),
        OfficialFile("mmlu", "5644e4745d447dea8793599458230be9ef8adf68137aaaed71227ec048ca664f", 1089),
        OfficialFile("bioasq", "c368dcc1454a2ddaf8ef3c40c47003aaabb4a5f599cf0997c24432d2d11e8385", 782),
        OfficialFile("lancet", "ea85be499bbbfff5602da338d10148c086aaff0fab11135d2229dd5ab948ebd5", 412),
        OfficialFile("nejm", "7b21092d7fd363aea510a73c6ec48d666f4ecbc85bb40b4751498a5abc25b02c", 603),
        OfficialFile("medbullets", "5fb4e365dfad6fd840d43e7ba2b0048c57de171fac684ba07e829d3d3b4e0030", 308),
        OfficialFile("medxpertqa", None, None),
    )
}
PREFIX = f"{OFFICIAL}:"  # one official file in a benchmark list: `medssr-official:medqa`


class OfficialFileError(ServiceError):
    """An official file could not be fetched."""


class OfficialFileMismatch(OfficialFileError):
    """An official file's bytes are not the pinned ones: never evaluated."""


def official_items() -> list[str]:
    """What `medssr-official` expands to in a benchmark list."""
    return [PREFIX + name for name in OFFICIAL_FILES]


def source_name(name: str) -> str:
    """How results name an official file: repository, short commit and path."""
    return f"{OFFICIAL_REPO}@{OFFICIAL_COMMIT[:7]}:data/{OFFICIAL_FILES[name].file}"


def _check(entry: OfficialFile, data: bytes, where: str) -> None:
    digest = hashlib.sha256(data).hexdigest()
    if entry.sha256 is not None and digest != entry.sha256:
        raise OfficialFileMismatch(
            f"{entry.file} from {where} has sha256 {digest}, not the {entry.sha256} of {OFFICIAL_REPO}@"
            f"{OFFICIAL_COMMIT[:7]}: it is not the paper's test set (delete it to fetch it again)"
        )


def fetch_official(name: str) -> Path:
    """The cached, checked copy of one official file (downloaded on first use)."""
    if name not in OFFICIAL_FILES:
        raise OfficialFileError(f"{OFFICIAL} has no {name!r}; it has {', '.join(OFFICIAL_FILES)}")
    entry = OFFICIAL_FILES[name]
    path = cache_dir() / "benchmarks" / OFFICIAL_REPO.replace("/", "-") / OFFICIAL_COMMIT / entry.file
    if path.is_file():
        _check(entry, path.read_bytes(), str(path))
        return path
    base = os.environ.get(BASE_URL_ENV, DEFAULT_BASE_URL).rstrip("/")
    url = f"{base}/{OFFICIAL_REPO}/{OFFICIAL_COMMIT}/data/{entry.file}"
    logger.info("Fetching %s (%s)", entry.file, url)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # public: no token
            data = response.read()
    except (urllib.error.URLError, OSError) as e:
        raise OfficialFileError(
            f"could not fetch {entry.file} from {url} ({e}); set {BASE_URL_ENV} to a mirror of "
            f"{OFFICIAL_REPO}, or pass the file by path"
        ) from e
    _check(entry, data, url)
    return atomic_write_bytes(path, data)
