"""TorchScript, ONNX and torch.export (pt2) exports match PyTorch to 1e-5 (fp32, CPU) with a dynamic batch, for
ResNet-18, BN-Inception and two timm backbones, a tiny ViT (token pooling) and a ResNet (random
weights, 64 px), and the ONNX graph passes onnx's checker."""
from __future__ import annotations

import pytest
import torch

from rcdml.config import load_config
from rcdml.deploy.export import PARITY_TOLERANCE, ServingModel, export_bytes, parity
from rcdml.models import build_model, input_normalization
from rcdml.models.inputs import Normalize, normalization

pytest.importorskip("onnxruntime")


TINY_VIT = ["model.timm_kwargs={img_size: 64, patch_size: 16, depth: 2, embed_dim: 32, num_heads: 2}",
            "model.pooling=avg+cls"]


# Four exports through the ONNX exporter take minutes of CPU: with the process-starting tests.
@pytest.mark.slow
@pytest.mark.parametrize("backbone, overrides", [
    ("resnet18", []), ("bn_inception", []), ("timm:vit_tiny_patch16_224", TINY_VIT),
    ("timm:resnet18", ["model.pooling=gem"])])
def test_exports_match_pytorch(backbone, overrides):
    torch.manual_seed(0)
    cfg = load_config(None, [f"model.backbone={backbone}", "model.embedding_size=64",
                             "data.image_size=64", *overrides])
    model = ServingModel(build_model(cfg.model), input_normalization(cfg.model))
    images = torch.rand(5, 3, 64, 64)  # another batch size than the export's example
    for fmt in ("torchscript", "onnx"):
        data = export_bytes(model, torch.rand(2, 3, 64, 64), fmt, opset=18)
        assert parity(model, data, fmt, images) <= PARITY_TOLERANCE, fmt


def test_serving_model_applies_the_backbone_normalisation():
    image = torch.rand(3, 8, 8)
    for style in ("imagenet", "bn_inception"):
        model = ServingModel(torch.nn.Identity(), normalization(style))
        expected = Normalize(normalization(style))(image)
        torch.testing.assert_close(model(image[None])[0], expected, rtol=1e-5, atol=1e-4)


def test_torch_export_program_matches_pytorch_at_any_batch_size():
    torch.manual_seed(0)
    cfg = load_config(None, ["model.backbone=resnet18", "model.embedding_size=64",
                             "data.image_size=64"])
    model = ServingModel(build_model(cfg.model), normalization("imagenet"))
    data = export_bytes(model, torch.rand(2, 3, 64, 64), "pt2", opset=18)
    for batch in (5, 1):
        assert parity(model, data, "pt2", torch.rand(batch, 3, 64, 64)) <= PARITY_TOLERANCE
