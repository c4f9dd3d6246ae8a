"""topovae.memory: freed memory stays in the process, so a training step's tensors are not
page-faulted in again at every step."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# twelve training steps of the paper's MNIST model on 2 sequences; the minor page faults of each
_PROBE = """
import json, resource, sys
import torch
from topovae.memory import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else None
from topovae.bench import CAP_DIM, INPUT_SHAPE, N_CAPS, SEQ_LEN
from topovae.models.tvae import TVAE, TVAEConfig
torch.manual_seed(0)
torch.set_num_threads(1)
model = TVAE(TVAEConfig(input_shape=INPUT_SHAPE, n_caps=N_CAPS, cap_dim=CAP_DIM, seq_len=SEQ_LEN,
                        coherence="shifting", time_window=13, capsule_window=3))
optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
x = torch.rand(2, SEQ_LEN, *INPUT_SHAPE)
faults = []
for _ in range(12):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    out = model(x)
    optimiser.zero_grad(set_to_none=True)
    out.loss.backward()
    optimiser.step()
    del out
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"took": took, "faults": faults}))
"""


def _steady_faults(mode: str) -> tuple[bool | None, int]:
    """(whether mallopt took the settings, page faults of the last six of twelve steps)"""
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True,
                         check=True)
    result = json.loads(out.stdout)
    return result["took"], sum(result["faults"][6:])


def test_training_steps_stop_page_faulting():
    took, kept = _steady_faults("keep")
    if not took:
        pytest.skip("the C library has no mallopt (not glibc)")
    _, default = _steady_faults("default")
    if default < 6 * 1000:
        pytest.skip(f"glibc's defaults fault only {default} pages here: nothing to remove")
    assert kept < default / 4, (default, kept)


def test_keep_freed_memory_is_idempotent():
    from topovae.memory import keep_freed_memory

    assert keep_freed_memory() == keep_freed_memory()

