"""Evaluation (MedSSR step 5): the ten benchmarks, the paper's protocol, per-item details, leaderboards."""
