"""The format version of every file topovae writes into a run folder.

``config.yaml``, ``model.json`` and ``metrics.json`` carry it; a reader refuses another version
with a one-line error instead of misreading the file (:mod:`topovae.rundir`).
"""

from __future__ import annotations

__all__ = ["FORMAT_VERSION"]

FORMAT_VERSION = 1
