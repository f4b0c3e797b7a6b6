"""Runs that join the stages: the demo (`make demo`), the ablation table, the steps they share, the method
check, and evaluation during training. The top layer: it imports the stages, never the other way round."""
