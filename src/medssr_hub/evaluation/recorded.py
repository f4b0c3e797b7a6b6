"""The evaluation's recovery passes, kept on disk: a resumed or repeated evaluation redoes none of them.

The generations are kept per item (`generations/<bench>.jsonl`); the constrained second pass that reads a
letter from an unparsed answer is greedy, so the same prompt, settings and model give the same answer, and
`recovered/<bench>.jsonl` keeps each one under the hash of exactly those inputs. A changed prompt, rule,
bias or model is another key: it is generated, never read back stale.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from medssr_hub.generation.base import Completion, GenerationBackend, Prompt, Sample, SamplingParams
from medssr_hub.resume import AppendLog, content_hash, read_appended


class RecordedGreedy:
    """A backend's greedy answers (temperature 0), each appended to `path` as it finishes and read back
    for a prompt answered before. Only what `extract_or_recover` uses: `tokenizer` and `generate`."""

    def __init__(self, backend: GenerationBackend, path: str | Path):
        self.backend = backend
        self.path = Path(path)

    @property
    def tokenizer(self):
        return getattr(self.backend, "tokenizer", None)  # an endpoint without `tokenizer=` has none

    def generate(
        self, prompts: Sequence[Prompt], params: SamplingParams, *, progress: bool = False, **_
    ) -> list[Completion]:
        if params.temperature != 0 or params.n != 1:
            raise ValueError("only one greedy answer per prompt is the same when asked again")
        settings = dataclasses.asdict(params)
        model = self.backend.identity()
        keys = [content_hash({"prompt": p, "params": settings, "model": model}) for p in prompts]
        done = {k: row["text"] for k, row in read_appended(self.path, key="key").items()}
        todo = sorted({k: i for i, k in enumerate(keys) if k not in done}.values())
        if todo:
            with AppendLog(self.path) as log:

                def persist(j: int, completion: Completion) -> None:
                    key = keys[todo[j]]
                    done[key] = completion.samples[0].text
                    log.write({"key": key, "text": done[key]})

                self.backend.generate(
                    [prompts[i] for i in todo], params, on_complete=persist, progress=progress
                )
        return [Completion([Sample(done[k], "stop")]) for k in keys]
