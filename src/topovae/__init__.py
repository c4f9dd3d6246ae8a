"""topovae: Topographic VAEs that learn equivariant capsules, with baselines and metrics."""

__version__ = "0.1.0"
