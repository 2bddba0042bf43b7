"""Dataset readers by name (``data.name``): each lists a dataset's images as a catalog, which is
split into training and evaluation images and checked for unreadable files."""
from rcdml.data.datasets import cars as _cars  # noqa: F401  (each module registers its reader)
from rcdml.data.datasets import cub as _cub  # noqa: F401
from rcdml.data.datasets import digits as _digits  # noqa: F401
from rcdml.data.datasets import folder as _folder  # noqa: F401
from rcdml.data.datasets import inshop as _inshop  # noqa: F401
from rcdml.data.datasets import omniglot as _omniglot  # noqa: F401
from rcdml.data.datasets import sop as _sop  # noqa: F401
from rcdml.data.datasets.base import (Catalog, DatasetSpec, ImageList, LayoutError, RetrievalData,
                                      dataset_names, dataset_spec, read_catalog, register_dataset)
from rcdml.data.datasets.load import check_dataset_config, read_dataset
from rcdml.data.datasets.splits import parse_classes, split_catalog

__all__ = ["Catalog", "DatasetSpec", "ImageList", "LayoutError", "RetrievalData",
           "check_dataset_config", "dataset_names", "dataset_spec", "parse_classes", "read_catalog",
           "read_dataset", "register_dataset", "split_catalog"]
