"""Datasets: annotation files + frame folders -> clip records -> class protocols."""

from microexp.data.records import ClipRecord, ClipSet, Exclusion
from microexp.data.registry import DatasetSpec, dataset_names, get_dataset, load_dataset, register_dataset

__all__ = ["ClipRecord", "ClipSet", "DatasetSpec", "Exclusion", "dataset_names", "get_dataset", "load_dataset",
           "register_dataset"]
