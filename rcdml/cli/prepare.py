"""``rcdml-prepare NAME --root DIR``: check that a dataset is laid out as its reader expects,
print the images and classes per split and every missing or unreadable file, or, when the layout
is not there, what to download from where. Exit code 0 when the dataset is ready, 1 otherwise."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from rcdml.cli.common import Command, version_line
from rcdml.data.datasets import LayoutError, dataset_names, read_catalog, split_catalog
from rcdml.data.datasets.load import all_paths
from rcdml.data.image_check import CHECK_LEVELS, describe_problems, find_unreadable
from rcdml.errors import UserError
from rcdml.log import configure_logging, get_logger

log = get_logger(__name__)

PROG = "rcdml-prepare"
COMMAND = Command(
    PROG, "NAME --root DIR [--check LEVEL] [--train-classes A-B] [--eval-classes C-D]",
    __doc__.split("\n\n")[0].replace("``", ""),
    example="rcdml-prepare omniglot --root data/omniglot",
    writes="nothing: it prints the images and classes per split, or what to download from where")


def _split_line(name: str, images) -> str:
    return f"  {name}: {len(images)} images, {images.num_classes} classes"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=COMMAND.summary,
                                     epilog=COMMAND.epilog(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=version_line(PROG))
    parser.add_argument("name", choices=dataset_names(), help="dataset (data.name)")
    parser.add_argument("--root", required=True, help="dataset directory (data.root)")
    parser.add_argument("--check", choices=CHECK_LEVELS, default="decode",
                        help="how deeply to check the image files (data.check_images)")
    parser.add_argument("--train-classes", default=None, help="data.train_classes, e.g. 1-100")
    parser.add_argument("--eval-classes", default=None, help="data.eval_classes, e.g. 101-200")
    args = parser.parse_args(argv)
    configure_logging()
    try:
        catalog = read_catalog(args.name, args.root)
        data = split_catalog(catalog, args.train_classes, args.eval_classes)
    except LayoutError as e:
        log.error(f"{PROG}: {args.name} is not ready under {args.root}:\n{e}")
        return 1
    except UserError as e:
        log.error(f"{PROG}: {e}")
        return 2
    log.info(f"{args.name} at {args.root}")
    log.info(_split_line("train", data.train))
    log.info(_split_line("query", data.query))
    if data.gallery is not None:
        log.info(_split_line("gallery", data.gallery))
    paths = all_paths(data)
    problems = find_unreadable(paths, args.check)
    if problems:
        log.error(describe_problems(problems, len(paths), args.check, shown=len(problems)))
        return 1
    log.info(f"  all {len(paths)} images readable (check: {args.check})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
