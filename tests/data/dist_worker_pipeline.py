"""torchrun worker of tests/data/test_sampler.py: each rank reads a flat-colour folder dataset
through DataPipeline and records the dataset indices (decoded from the pixels) and labels of its
training batches, for both loaders; rank 0 writes everything as JSON."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from conftest import color_index  # noqa: E402

from rcdml.config import load_config  # noqa: E402
from rcdml.data import build_pipeline  # noqa: E402
from rcdml.models.inputs import normalization  # noqa: E402
from rcdml.distributed import all_gather_object, init_distributed, is_main, shutdown  # noqa: E402


def decode(images: torch.Tensor) -> list[int]:
    norm = normalization("imagenet")
    pixels = images[:, :, 0, 0] * torch.tensor(norm.std) + torch.tensor(norm.mean)
    return [color_index(p.tolist()) for p in pixels]


def record(loader) -> list[dict]:
    return [{"index": decode(images), "label": labels.tolist()} for images, labels in loader]


def main() -> None:
    root, out, batch, k = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    info = init_distributed("gloo")
    result = {}
    for loader in ("torch", "dali"):
        cfg = load_config(None, ["data.name=folder", f"data.root={root}", "data.image_size=8",
                                 "data.resize_size=8", "data.flip=false", "data.num_workers=1",
                                 f"data.loader={loader}", f"train.batch_size={batch}",
                                 f"data.samples_per_class={k}", "train.seed=7"])
        pipe = build_pipeline(cfg, info, normalization("imagenet"))
        result[loader] = {"epoch0": record(pipe.train_loader(0)),
                          "epoch1": record(pipe.train_loader(1)),
                          "resumed": record(pipe.train_loader(0, start_step=3)),
                          "after_resume": record(pipe.train_loader(1)),
                          "steps": pipe.steps_per_epoch,
                          "len_resumed": len(pipe.train_loader(0, start_step=3))}
    gathered = all_gather_object(result)
    if is_main():
        with open(out, "w") as f:
            json.dump(gathered, f)
    shutdown()


if __name__ == "__main__":
    main()
