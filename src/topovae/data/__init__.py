"""Data: image sources, batched sequence transformations, seeded resumable loaders."""

from .download import DataNotFoundError, locate_files, user_cache_dir
from .dsprites import DSpritesArray, RenderedDSprites
from .files import DataFileError, open_sequences, read_images
from .ground_truth import GroundTruthData
from .idx import read_idx, write_idx
from .loaders import DataBundle, DataConfig, SequenceLoader, build_data
from .own import SequenceSource, images_source, sequences_source
from .sequences import SEQUENCES, SequenceBatch, build_sequences
from .sources import (
    SOURCES,
    ImageSource,
    TensorSource,
    build_source,
    folder_source,
    tensor_source,
)

__all__ = [
    "DataBundle",
    "DataFileError",
    "SequenceSource",
    "images_source",
    "open_sequences",
    "read_images",
    "sequences_source",
    "DataConfig",
    "SEQUENCES",
    "SequenceBatch",
    "SequenceLoader",
    "build_data",
    "build_sequences",
    "SOURCES",
    "DSpritesArray",
    "DataNotFoundError",
    "GroundTruthData",
    "ImageSource",
    "RenderedDSprites",
    "TensorSource",
    "build_source",
    "folder_source",
    "locate_files",
    "read_idx",
    "tensor_source",
    "user_cache_dir",
    "write_idx",
]
