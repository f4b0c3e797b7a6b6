"""Pseudo-labels by majority vote over the policy's own answers."""

from medssr_hub.voting import Vote, majority_vote

__all__ = ["Vote", "majority_vote"]
