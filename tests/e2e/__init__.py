"""End-to-end runs: the main job, the ablation, the shipped recipes in data order, Slurm."""
