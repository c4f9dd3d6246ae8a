"""Seeded, resumable batch loaders of transformation sequences.

:func:`build_data` turns a :class:`DataConfig` and a seed into train / validation / test loaders.
Every batch is a pure function of ``(seed, stream, epoch, batch index)``: the epoch fixes the
order of the images (a seeded permutation) and the transformations come from seeded generators,
one per sequence for training and validation (seeded by the sequence's position in the epoch, so
that a sequence does not depend on the batch size: see ``seed_per_sequence``) and one per batch
for the test set. Hence the same seed gives the same sequences however the batches are
produced, transformations are drawn afresh every time an image is used (each epoch), and a run
killed mid-epoch resumes on exactly the batch it would have seen next: a loader's
``state_dict()`` is ``{"epoch", "next_batch"}`` (PyTorch Lightning saves and restores it for
stateful iterables; a trainer that does not should call ``set_epoch`` at the start of each epoch).

Validation and test loaders are fixed evaluation sets: each pass yields the same sequences, so
losses are comparable across epochs and runs with the same seed.

Kept as one module (a little over 400 lines) because the seeding contract above holds only if the
train, validation and test loaders and :func:`build_data` agree; they are read together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..config import Config
from .own import OWN_SOURCES, open_own_data
from .sequences import SEQUENCES, Builder, RowGenerators, RowSeededBuilder, build_sequences
from .sources import SOURCES, ImageSource, build_source, has_structured_order

TRAIN_STREAM, VAL_STREAM, TEST_STREAM = 1, 2, 3


@dataclasses.dataclass
class DataConfig(Config):
    """What to train and evaluate on (names of sources and builders are registry keys).

    Your own data (``docs/your-data.md``): ``source="images"`` or ``"sequences"`` read
    ``path`` (a ``.npy``/``.npz`` file or a folder); ``labels_path``/``factors_path`` (``.npy``)
    add labels ``(N,)`` and per-frame factors ``(N, S, F)`` named ``factor_names``; the test set
    is ``test_path`` (with ``test_labels_path``/``test_factors_path``) or, without it, a held-out
    ``test_fraction`` of ``path`` drawn with ``split_seed``. ``split``/``test_split`` name splits
    of the built-in sources; of them, these two use only ``test_split="heldout"``.
    """

    source: str = "mnist"
    split: str = "train"
    test_split: str = "test"  # a split of the source, or "heldout": the validation hold-out
    sequences: str = "single_factor"
    test_sequences: str | None = None
    transforms: list[str] = dataclasses.field(default_factory=lambda: ["rotation", "hue", "scale"])
    seq_len: int = 18
    batch_size: int = 8
    n_train: int | None = None
    val_fraction: float = 0.2
    n_test: int | None = None
    data_dir: str | None = None
    download: bool = True
    path: str | None = None
    labels_path: str | None = None
    factors_path: str | None = None
    factor_names: list[str] | None = None
    test_path: str | None = None
    test_labels_path: str | None = None
    test_factors_path: str | None = None
    test_fraction: float = 0.2
    split_seed: int = 0

    def validate(self) -> None:
        if self.source not in SOURCES and self.source not in OWN_SOURCES:
            raise ValueError(f"source {self.source!r} must be one of "
                             f"{sorted(SOURCES.names() + list(OWN_SOURCES))}")
        if self.source == "sequences" and (self.sequences != "given" or self.test_sequences
                                           not in (None, "given")):
            raise ValueError("data.source=sequences takes the frames as they are: set "
                             "data.sequences=given (and no other data.test_sequences)")
        if self.source != "sequences" and "given" in (self.sequences, self.test_sequences):
            raise ValueError("data.sequences=given needs data.source=sequences")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        for key in ("sequences", "test_sequences"):
            value = getattr(self, key)
            if value is not None and value not in SEQUENCES:
                raise ValueError(f"{key} {value!r} must be one of {SEQUENCES.names()}")
        allowed = {"rotation", "hue", "scale"}
        if not self.transforms or not set(self.transforms) <= allowed:
            raise ValueError(
                f"transforms {self.transforms} must be a non-empty subset of {allowed}"
            )
        if self.seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {self.seq_len}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        for key in ("n_train", "n_test"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"{key} must be >= 1 or null, got {value}")


def _seed_of(*keys: int) -> int:
    """A 63-bit seed derived from integer keys (independent streams for distinct keys)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


class SequenceLoader:
    """An iterable of batch dicts ``{"x": (B, S, C, H, W), "factors": {name: (B, S)},
    "labels": (B,)}`` over the rows ``indices`` of ``source``.

    ``shuffle``: a fresh seeded order every epoch (training); otherwise the order of ``indices``.
    ``advance_epochs``: after a full pass, move on to the next epoch (training); otherwise every
    pass is epoch 0 again (fixed evaluation sets).
    ``prefetch``: how many batches the consumer fetches ahead of the one it is training on;
    ``state_dict`` subtracts them so that a resume restarts on the first batch not yet trained on.
    PyTorch Lightning's default fetcher prefetches one batch: set ``prefetch=1`` under Lightning.
    ``seed_per_sequence``: draw the transformations of every sequence from its own generator,
    seeded by (seed, stream, epoch, position in the epoch), instead of one generator per batch.
    Then a sequence does not depend on the batch size or on which batch holds it: the batches
    ``k W .. k W + W - 1`` of a loader with batch size ``b``, concatenated, are exactly batch
    ``k`` of the same loader with batch size ``W b`` (what data-parallel training relies on; see
    ``docs/scaling.md``). The training and validation loaders use it; the test set keeps
    per-batch seeds (so that evaluations of earlier runs are unchanged).
    ``threads``: intra-op CPU threads used while generating a batch (restored afterwards; None
    keeps the global setting). The warps are too small to gain from threads, and on a busy
    machine a multi-threaded ``grid_sample`` of one batch was measured 50-100x slower (waiting
    for the other threads) than a single-threaded one.
    """

    def __init__(
        self,
        source: ImageSource,
        indices: np.ndarray,
        builder: Builder,
        batch_size: int,
        seed: int,
        stream: int = TRAIN_STREAM,
        shuffle: bool = True,
        drop_last: bool = False,
        advance_epochs: bool = True,
        device: str | torch.device | None = None,
        prefetch: int = 0,
        threads: int | None = 1,
        seed_per_sequence: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        self.builder = builder
        self.batch_size = batch_size
        self.seed = int(seed)
        self.stream = stream
        self.shuffle = shuffle
        self.drop_last = drop_last and len(self.indices) >= batch_size
        self.advance_epochs = advance_epochs
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        self.prefetch = prefetch
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        self.threads = threads
        self.device = torch.device(device) if device is not None else None
        self.seed_per_sequence = seed_per_sequence
        self._sequence_seeds: tuple[int, np.ndarray] = (-1, np.zeros(0, dtype=np.int64))
        self.epoch = 0
        self.next_batch = 0
        self._order_cache: tuple[int, np.ndarray] = (-1, self.indices)

    def __len__(self) -> int:
        n = len(self.indices)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    @property
    def n_images(self) -> int:
        return len(self.indices)

    def order(self, epoch: int) -> np.ndarray:
        """The image rows of ``epoch`` in the order they are batched."""
        if not self.shuffle:
            return self.indices
        if self._order_cache[0] != epoch:
            rng = np.random.default_rng(_seed_of(self.seed, self.stream, epoch))
            self._order_cache = (epoch, self.indices[rng.permutation(len(self.indices))])
        return self._order_cache[1]

    def batch(self, epoch: int, index: int) -> dict[str, Any]:
        """Batch ``index`` of ``epoch``: a pure function of (seed, stream, epoch, index)."""
        if not 0 <= index < len(self):
            raise ValueError(f"batch index {index} out of range [0, {len(self)})")
        rows = self.order(epoch)[index * self.batch_size : (index + 1) * self.batch_size]
        if self.seed_per_sequence:
            first = index * self.batch_size
            return self._make_sequences(rows, self.sequence_seeds(epoch)[first : first + len(rows)])
        return self._make(rows, _seed_of(self.seed, self.stream, epoch, index, 7))

    def sequence_seeds(self, epoch: int) -> np.ndarray:
        """The generator seed of every position of ``epoch`` (with ``seed_per_sequence``)."""
        if self._sequence_seeds[0] != epoch:
            words = np.random.SeedSequence([self.seed, self.stream, epoch, 11]).generate_state(
                len(self.indices), dtype=np.uint64)
            self._sequence_seeds = (epoch, (words >> np.uint64(1)).astype(np.int64))
        return self._sequence_seeds[1]

    def _make_sequences(self, rows: np.ndarray, seeds: np.ndarray) -> dict[str, Any]:
        if isinstance(self.builder, RowSeededBuilder):  # one call, a generator per row
            return self._make(rows, [int(seed) for seed in seeds])
        # any other builder: one call per sequence with its own generator, joined
        previous = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            parts = [self._generate(rows[i : i + 1], int(seeds[i])) for i in range(len(rows))]
        finally:
            torch.set_num_threads(previous)
        return {"x": torch.cat([p["x"] for p in parts]),
                "factors": {name: torch.cat([p["factors"][name] for p in parts])
                            for name in parts[0]["factors"]},
                "labels": torch.cat([p["labels"] for p in parts])}

    def _make(self, rows: np.ndarray, seed: int | list[int]) -> dict[str, Any]:
        if self.threads is None or self.threads == torch.get_num_threads():
            return self._generate(rows, seed)
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self._generate(rows, seed)
        finally:
            torch.set_num_threads(previous)

    def _generate(self, rows: np.ndarray, seed: int | list[int]) -> dict[str, Any]:
        generator: torch.Generator | RowGenerators
        if isinstance(seed, list):
            generator = RowGenerators([torch.Generator().manual_seed(s) for s in seed])
        else:
            generator = torch.Generator().manual_seed(seed)
        rows_t = torch.from_numpy(rows)
        images = None
        if self.source.images is not None:
            images = self.source.images[rows_t]
            if self.device is not None:
                images = images.to(self.device)
        factors = self.source.factors[rows_t] if self.source.factors is not None else None
        out = self.builder(images, generator, factors=factors)
        if self.source.labels is not None:
            labels = self.source.labels[rows_t].long()
        else:
            labels = torch.full((len(rows),), -1, dtype=torch.long)
        return {"x": out.x, "factors": out.factors, "labels": labels}

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` (keeps the position when it is already the current epoch, as after a
        restore from ``load_state_dict``)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if epoch != self.epoch:
            self.epoch = epoch
            self.next_batch = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.epoch if self.advance_epochs else 0
        start = self.next_batch if self.advance_epochs else 0
        for index in range(start, len(self)):
            batch = self.batch(epoch, index)
            if self.advance_epochs:
                self.next_batch = index + 1
            yield batch
        if self.advance_epochs:
            self.epoch += 1
            self.next_batch = 0

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "next_batch"}``: where a resumed run continues (see ``prefetch``)."""
        return {"epoch": self.epoch, "next_batch": max(self.next_batch - self.prefetch, 0)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, next_batch = int(state["epoch"]), int(state["next_batch"])
        if epoch < 0 or not 0 <= next_batch <= len(self):
            raise ValueError(f"invalid loader state {state} for {len(self)} batches")
        self.epoch, self.next_batch = epoch, next_batch


@dataclasses.dataclass
class DataBundle:
    """The loaders of one experiment and their provenance (``info`` goes into metrics.json)."""

    train: SequenceLoader
    val: SequenceLoader
    test: SequenceLoader
    info: dict[str, Any]


def _builder(name: str, config: DataConfig, source: ImageSource) -> Builder:
    return build_sequences(
        name, transforms=config.transforms, seq_len=getattr(source, "seq_len", config.seq_len),
        ground_truth=source.ground_truth, factor_names=getattr(source, "factor_names", None),
    )


HELDOUT = "heldout"


def build_data(config: DataConfig, seed: int) -> DataBundle:
    """Train / validation / test loaders for ``config``.

    The validation set is a seeded ``val_fraction`` of the training split (disjoint from the
    training images); ``n_train`` caps the remaining training images and ``n_test`` the test
    images (a seeded subset). ``test_split="heldout"`` evaluates on the validation hold-out of the
    training split instead of a separate test split.
    """
    own = open_own_data(config) if config.source in OWN_SOURCES else None
    if own is not None:
        train_source, candidates = own.train, own.train_rows
    else:
        train_source = build_source(config.source, config.split, config.data_dir, config.download)
        candidates = np.arange(len(train_source))
    rng = np.random.default_rng(_seed_of(seed, 0))
    permutation = candidates[rng.permutation(len(candidates))]
    n_val = int(round(config.val_fraction * len(candidates)))
    val_rows, train_rows = permutation[:n_val], permutation[n_val:]
    if config.n_train is not None:
        train_rows = train_rows[: config.n_train]
    if len(train_rows) == 0:
        raise ValueError("no training images left after the validation hold-out")
    if config.test_split == HELDOUT:
        # Evaluate on the held-out images of the training source (never trained on): the only
        # honest test set when a source has a single split, e.g. the 5,000 digits of mnist_5k.
        if n_val == 0:
            raise ValueError("test_split 'heldout' needs val_fraction > 0")
        test_source = train_source
        test_rows = np.sort(val_rows)
        percent = int(round(config.val_fraction * 100))
        test_split_name = f"held-out {percent}% of {train_source.split}"
    elif own is not None:
        test_source, test_rows, test_split_name = own.test, own.test_rows, own.test_split
    else:
        test_source = build_source(
            config.source, config.test_split, config.data_dir, config.download
        )
        test_rows = np.arange(len(test_source))
        test_split_name = test_source.split
    if config.n_test is not None and config.n_test < len(test_rows):
        test_rows = np.sort(rng.permutation(test_rows)[: config.n_test])
    if has_structured_order(test_source):
        # a grid in index order (dSprites) or digits grouped by class (mnist_5k): the first test
        # sequences would all start from small squares at one orientation, or all be zeros; a
        # fixed seeded order spreads any prefix over the grid or the classes
        test_rows = test_rows[np.random.default_rng(_seed_of(seed, 3)).permutation(len(test_rows))]
    val_rows = np.sort(val_rows)
    if has_structured_order(train_source):  # the same for validation, which reads its first batches
        val_rows = val_rows[np.random.default_rng(_seed_of(seed, 4)).permutation(len(val_rows))]
    test_name = config.test_sequences or config.sequences
    common = {"batch_size": config.batch_size, "seed": seed}
    train = SequenceLoader(
        train_source,
        train_rows,
        _builder(config.sequences, config, train_source),
        stream=TRAIN_STREAM,
        shuffle=True,
        drop_last=True,
        seed_per_sequence=True,
        **common,
    )
    val = SequenceLoader(
        train_source,
        val_rows,
        _builder(config.sequences, config, train_source),
        stream=VAL_STREAM,
        shuffle=False,
        advance_epochs=False,
        seed_per_sequence=True,
        **common,
    )
    test = SequenceLoader(
        test_source,
        test_rows,
        _builder(test_name, config, test_source),
        stream=TEST_STREAM,
        shuffle=False,
        advance_epochs=False,
        **common,
    )
    info = {
        "source": train_source.name,
        "citation": train_source.citation,
        "splits": {
            "train": {
                "split": train_source.split,
                "n_images": int(len(train_rows)),
                "of": len(candidates),
                "description": train_source.description,
            },
            "val": {
                "split": f"{int(round(config.val_fraction * 100))}% of {train_source.split}",
                "n_images": int(len(val_rows)),
            },
            "test": {
                "split": test_split_name,
                "n_images": int(len(test_rows)),
                "of": len(test_source),
                "description": test_source.description,
            },
        },
        "sequences": config.sequences,
        "test_sequences": test_name,
        "transforms": list(config.transforms),
        "seq_len": train.builder.seq_len if hasattr(train.builder, "seq_len") else config.seq_len,
        "batch_size": config.batch_size,
        "seed": seed,
    }
    return DataBundle(train, val, test, info)
