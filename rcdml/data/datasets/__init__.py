"""Dataset readers by name (``data.name``); each returns image paths and labels per split."""
from rcdml.data.datasets import digits as _digits  # noqa: F401  (registers "digits")
from rcdml.data.datasets import folder as _folder  # noqa: F401  (registers "folder")
from rcdml.data.datasets.base import (DatasetSpec, ImageList, RetrievalData, dataset_names,
                                      dataset_spec, read_dataset, register_dataset)

__all__ = ["DatasetSpec", "ImageList", "RetrievalData", "dataset_names", "dataset_spec",
           "read_dataset", "register_dataset"]
