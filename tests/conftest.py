import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The shared real-data folder next to the checkout (CI and developer machines have it).
SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """One torch thread for a test module whose small convolutions do not gain from two."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = Path(os.environ.get("TOPOVAE_TEST_MNIST", SHARED_MNIST))
    if not (path / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST test files not found in {path}")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run only when asked for (``-m slow``)."""
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def deterministic_log(run: Path) -> str:
    """``RUN/logs/csv/metrics.csv`` without its wall-time columns (``eval/seconds``): what an
    interrupted and resumed run must reproduce exactly."""
    import csv
    import io

    with (run / "logs" / "csv" / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        return ""
    keep = [name for name in rows[0] if not name.endswith("seconds")]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keep, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
