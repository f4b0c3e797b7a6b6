"""The knowledge corpus injected into rare-disease prompts, and retrieval over it.

Corpus = one knowledge card per catalogue disease, plus any documents the user adds (local JSONL/parquet
or a Hub dataset with `title`/`text`, chunked). Retrieval is BM25 (`bm25s`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow.parquet as pq

from medssr_hub.errors import InputError
from medssr_hub.resolve import resolve_dataset
from medssr_hub.synthesis.catalog import RareDisease
from medssr_hub.utils import read_jsonl

logger = logging.getLogger(__name__)

FREQUENCY_BANDS = [
    (0.8, "very frequent (80-99%)"),
    (0.3, "frequent (30-79%)"),
    (0.05, "occasional (5-29%)"),
    (0.0, "very rare (1-4%)"),
]


@dataclass(frozen=True)
class Passage:
    id: str  # "card:ORPHA:558" or "doc:<title>#<chunk>"
    title: str
    text: str


MAX_PER_BAND = 12  # phenotypes listed per frequency band in a knowledge card


def disease_card(disease: RareDisease) -> Passage:
    """A plain-text knowledge card: what a clinician would want in front of them about one disease."""
    lines = [f"{disease.name} ({disease.id}) is a rare disease."]
    if disease.inheritance:
        lines.append(f"Inheritance: {', '.join(disease.inheritance)}.")
    if disease.onset:
        lines.append(f"Onset: {', '.join(disease.onset)}.")
    if disease.genes:
        lines.append(f"Associated genes: {', '.join(disease.genes[:10])}.")
    for _, label in FREQUENCY_BANDS:
        names = [p.name for p in disease.phenotypes if _band(p.frequency) == label]
        if names:
            lines.append(f"Features, {label}: {', '.join(names[:MAX_PER_BAND])}.")
    return Passage(id=f"card:{disease.id}", title=disease.name, text=" ".join(lines))


def _band(frequency: float) -> str | None:
    if frequency <= 0:
        return None
    return next(label for threshold, label in FREQUENCY_BANDS if frequency > threshold or threshold == 0.0)


def chunk_document(title: str, text: str, words: int = 200, overlap: int = 40) -> list[Passage]:
    tokens = text.split()
    step = max(1, words - overlap)
    chunks = []
    for k, start in enumerate(range(0, max(1, len(tokens) - overlap), step)):
        piece = " ".join(tokens[start : start + words])
        if piece:
            chunks.append(Passage(id=f"doc:{title}#{k}", title=title, text=piece))
    return chunks


def load_documents(source: str, revision: str | None = None, hub: str | None = None) -> list[Passage]:
    """User documents with `title` and `text` from a JSONL/parquet file, a folder, or a Hub dataset id."""
    path = resolve_dataset(source, revision, hub)
    files = sorted(path.rglob("*")) if path.is_dir() else [path]
    rows = []
    for f in files:
        if f.suffix == ".parquet":
            rows += pq.read_table(f).to_pylist()
        elif f.suffix == ".jsonl":
            rows += read_jsonl(f)
    passages = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not str(row.get("text") or "").strip():
            raise InputError(f"{source}: document #{i} has no `text`")
        passages += chunk_document(str(row.get("title") or f"document-{i}"), str(row["text"]))
    return passages


class BM25Retriever:
    """BM25 over the corpus (bm25s: sparse-matrix scoring, fast enough to index 4k cards in a second)."""

    def __init__(self, passages: Sequence[Passage]):
        import bm25s

        if not passages:
            raise InputError("cannot build a retriever over an empty corpus")
        self.passages = list(passages)
        self._bm25s = bm25s
        self.index = bm25s.BM25()
        self.index.index(
            bm25s.tokenize(
                [f"{p.title}. {p.text}" for p in self.passages], stopwords="en", show_progress=False
            ),
            show_progress=False,
        )

    def search(self, query: str, k: int = 3) -> list[Passage]:
        k = min(k, len(self.passages))
        tokens = self._bm25s.tokenize([query], stopwords="en", show_progress=False)
        docs, scores = self.index.retrieve(tokens, k=k, show_progress=False)
        return [self.passages[int(i)] for i, s in zip(docs[0], scores[0], strict=True) if s > 0]


def build_corpus(diseases: Iterable[RareDisease], documents: Sequence[Passage] = ()) -> list[Passage]:
    return [disease_card(d) for d in diseases] + list(documents)
