"""Datasets as tensors: CIFAR-10 from npz, HuggingFace-style Parquet or torchvision."""

from trainables.data.batches import iterate_batches, num_batches
from trainables.data.splits import ImageSet, Splits, describe_split, load_splits, per_class_rows, rows_in

__all__ = ["ImageSet", "Splits", "describe_split", "iterate_batches", "load_splits", "num_batches", "per_class_rows",
           "rows_in"]
