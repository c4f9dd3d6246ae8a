"""The measurements of topovae: importing this module registers them (in evaluation order)."""

from topovae.measure import (  # noqa: F401
    disentanglement,
    equivariance,
    likelihood,
    roll,
    topographic_map,
)
