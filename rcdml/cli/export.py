"""``rcdml-export CONFIG checkpoint=PATH format=onnx|pt2|torchscript [out=FILE]``: the embedding
network with its input normalisation, for RGB images in [0, 1] of the run's image size and any
batch size. After the export, the exported model must match PyTorch (fp32, CPU, max abs
difference <= 1e-5) on evaluation images of the run's dataset, else nothing is written (exit 1).
ONNX needs ``pip install rcdml[export]``."""
from __future__ import annotations

import sys
from typing import Sequence

import torch

from rcdml.cli.common import Command, config_error, dataclass_keys
from rcdml.config import ConfigError
from rcdml.deploy.settings import ExportArgs
from rcdml.errors import UserError
from rcdml.log import configure_logging

PROG = "rcdml-export"
COMMAND = Command(
    PROG, "CONFIG checkpoint=PATH [format=onnx|pt2|torchscript] [out=FILE] [key=value ...]",
    "Export a checkpoint's network with its input normalisation (RGB in [0, 1], (batch, 3, "
    "data.image_size, data.image_size), any batch size); written only if it matches PyTorch to "
    "1e-5 on evaluation images of the run's dataset. ONNX needs pip install rcdml[export].",
    example="rcdml-export runs/digits/config.yaml checkpoint=runs/digits/best.pt format=onnx",
    writes="runs/digits/best.onnx (out= chooses the file; the default is the checkpoint's path "
           "with .onnx, .pt2 or .ts for .pt)",
    keys=dataclass_keys(ExportArgs))


def parity_batch(cfg, norm, count: int) -> torch.Tensor:
    """The first ``count`` evaluation images of the run's dataset through the evaluation
    transform without its normalisation (the exported model normalises)."""
    from torchvision import transforms as T

    from rcdml.data.datasets import read_dataset
    from rcdml.data.torch_loader import load_rgb
    from rcdml.data.transforms import eval_transform

    images = read_dataset(cfg.data).query
    to_unit = T.Compose(eval_transform(cfg.data, norm).transforms[:-1])
    return torch.stack([to_unit(load_rgb(p)) for p in images.paths[:count]])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from rcdml.cli.common import parse_with_config
        args, cfg = parse_with_config(ExportArgs, COMMAND, argv)
        configure_logging()
        if args.format == "onnx":
            try:
                import onnx  # noqa: F401
                import onnxruntime  # noqa: F401
            except ImportError as e:
                raise ConfigError(f"format: onnx needs {e.name}; pip install rcdml[export]") from None
        from rcdml.deploy.model import load_trained

        model = load_trained(cfg, args.checkpoint)
        images = parity_batch(cfg, model.normalization, args.parity_images)
    except UserError as e:
        return config_error(PROG, e)
    from rcdml.deploy.export import (PARITY_TOLERANCE, ServingModel, default_path, export_bytes,
                                     parity)
    from rcdml.io import atomic_write_bytes

    serving = ServingModel(model.network.cpu().float(), model.normalization)
    data = export_bytes(serving, images[:2], args.format, args.opset)
    diff = parity(serving, data, args.format, images)
    if not diff <= PARITY_TOLERANCE:
        print(f"{PROG}: parity check failed: the {args.format} export differs from PyTorch by "
              f"{diff:.3g} (> {PARITY_TOLERANCE}) on {len(images)} images; nothing written",
              file=sys.stderr)
        return 1
    out = args.out or default_path(args.checkpoint, args.format)
    atomic_write_bytes(out, lambda f: f.write(data))
    print(f"{PROG}: wrote {out} ({args.format}, input (batch, 3, {cfg.data.image_size}, "
          f"{cfg.data.image_size}) RGB in [0, 1]); parity max abs diff {diff:.2g} on "
          f"{len(images)} images")
    return 0
