"""Export the embedding network for serving: ONNX, a torch.export program (``.pt2``, PyTorch's
successor of TorchScript, loaded by ``torch.export.load(path).module()``) or TorchScript; input
RGB images in [0, 1]
of shape (batch, 3, size, size) with a dynamic batch, output the embeddings (l2-normalised when
the model is). The backbone's input normalisation is part of the exported graph, and every
export is checked against PyTorch on real images."""
from __future__ import annotations

import contextlib
import io
import os
import warnings

import numpy as np
import torch
from torch import nn

from rcdml.models import Normalization, Normalize

# fp32 on CPU: what the exported model must reproduce, at most, in max abs difference.
PARITY_TOLERANCE = 1e-5
INPUT, OUTPUT = "images", "embeddings"


class ServingModel(nn.Module):
    """The network's input normalisation (the pipelines' :class:`Normalize`: channel order, mean,
    std) followed by the network."""

    def __init__(self, network: nn.Module, norm: Normalization) -> None:
        super().__init__()
        self.normalize = Normalize(norm)
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(self.normalize(images))


@contextlib.contextmanager
def _torchscript():
    """Without torch.jit's warnings: its FutureWarnings repeat what ``format`` says
    (TorchScript is deprecated in PyTorch, pt2 its successor), and the tracer's warnings about
    values it records as constants ask for what the parity check does before anything is written:
    run the trace on another batch size than the example's."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def export_bytes(model: ServingModel, example: torch.Tensor, fmt: str, opset: int) -> bytes:
    """The serialised ``model`` (in eval mode) traced on ``example``."""
    model.eval()
    buffer = io.BytesIO()
    with torch.no_grad():
        if fmt == "torchscript":
            with _torchscript():
                torch.jit.save(torch.jit.trace(model, example), buffer)
        elif fmt == "pt2":
            program = torch.export.export(model, (example,),
                                          dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
            torch.export.save(program, buffer)
        else:
            import onnx

            program = torch.onnx.export(
                model, (example,), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                dynamic_shapes=({0: torch.export.Dim("batch")},), opset_version=opset,
                verbose=False)
            proto = program.model_proto
            onnx.checker.check_model(proto, full_check=True)
            buffer.write(proto.SerializeToString())
    return buffer.getvalue()


def run_exported(data: bytes, fmt: str, images: torch.Tensor) -> np.ndarray:
    """The exported model's output on ``images`` (CPU; onnxruntime for ONNX)."""
    if fmt in ("torchscript", "pt2"):
        if fmt == "torchscript":
            with _torchscript():
                loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
        else:
            loaded = torch.export.load(io.BytesIO(data)).module()
        with torch.no_grad():
            return loaded(images).numpy()
    import onnxruntime

    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT], {INPUT: images.numpy()})[0]


def parity(model: ServingModel, data: bytes, fmt: str, images: torch.Tensor) -> float:
    """Max abs difference between the exported model and ``model`` on ``images``."""
    with torch.no_grad():
        expected = model.eval()(images).numpy()
    got = run_exported(data, fmt, images)
    if got.shape != expected.shape:
        return float("inf")
    return float(np.abs(got - expected).max())


SUFFIX = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".ts"}


def default_path(checkpoint: str, fmt: str) -> str:
    return os.path.splitext(checkpoint)[0] + SUFFIX[fmt]
