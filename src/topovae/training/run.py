"""Run directories: kept as the import path of the training code; see :mod:`topovae.rundir`.

Everything here is :mod:`topovae.rundir` (the only reader and writer of a run folder) and
:mod:`topovae.io` (the atomic writes), re-exported for the modules that import it from here.
"""

from __future__ import annotations

from topovae.io import atomic_write_json, atomic_write_text
from topovae.rundir import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    Run,
    RunDir,
    check_output_dir,
    create_run_dir,
    load_run,
    read_run_config,
)

__all__ = ["CONFIG_FILE", "CHECKPOINT_DIR", "Run", "RunDir", "check_output_dir",
           "create_run_dir", "read_run_config", "load_run", "atomic_write_text",
           "atomic_write_json"]
