"""Small published inputs the tests start from."""

from __future__ import annotations

from pathlib import Path


def publish_vignettes(root: Path, count: int = 6) -> Path:
    """`count` catalogue vignettes (keys known by construction) published to a local hub at root/hub as
    medssr/synth@v1.0.0; returns the hub folder."""
    from medssr_hub.synthesis.config import SynthesisConfig
    from medssr_hub.synthesis.synthesize import run_synthesis

    hub = root / "hub"
    run_synthesis(
        SynthesisConfig(
            num_questions=count,
            alpha=1.0,
            rare_generator="vignette",
            chunk_size=8,
            output_dir=str(root / "synth"),
            publish_repo="medssr/synth",
            publish_version="v1.0.0",
            hub=str(hub),
        )
    )
    return hub
