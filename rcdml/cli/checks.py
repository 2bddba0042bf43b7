"""The checks each command runs before any work, composed from the layers that own them: the
config's own rules, then each registry, the data, the process group and the backend. A mistake
costs seconds, not a queued job."""
from __future__ import annotations

import os

from rcdml.config import Config, ConfigError
from rcdml.config.checks import check_config, check_training_config
from rcdml.data.datasets import check_dataset_config
from rcdml.data.pipeline import check_loader_config
from rcdml.distributed import check_dist_config
from rcdml.losses.registry import check_loss_config
from rcdml.models.registry import check_model_config


def check_evaluation(cfg: Config) -> None:
    """What evaluating a checkpoint with ``cfg`` needs: the model, the evaluation data and the
    process group (not the loss, the optimiser or the training backend: a DeepSpeed run's config
    evaluates without DeepSpeed installed)."""
    check_model_config(cfg)
    check_dataset_config(cfg.data, None)
    check_config(cfg)
    check_loader_config(cfg.data)
    check_dist_config(cfg.dist)


def check_training(cfg: Config, world_size: int = 1) -> None:
    """Everything a training run of ``cfg`` on ``world_size`` ranks needs."""
    # Here, not at the top: evaluation does not import the training engine.
    from rcdml.engine.backends import check_backend_config
    from rcdml.engine.optim import check_optim_config

    check_model_config(cfg)
    check_loss_config(cfg.loss)
    check_config(cfg)
    check_training_config(cfg, world_size)
    check_run_outside_data(cfg)
    check_loader_config(cfg.data)
    check_dataset_config(cfg.data, cfg.train.batch_size)
    check_dist_config(cfg.dist)
    check_backend_config(cfg, world_size)
    check_optim_config(cfg)


def check_run_outside_data(cfg: Config) -> None:
    """A ``folder`` dataset is every image folder under ``data.root``: a run directory inside it
    would turn the run's own pictures into a class of the next run, or of the resumed one."""
    if cfg.data.name != "folder":
        return
    run, root = os.path.realpath(cfg.output_dir), os.path.realpath(cfg.data.root)
    if os.path.commonpath([run, root]) == root:
        raise ConfigError(f"output_dir: {cfg.output_dir} is inside data.root ({cfg.data.root}) of "
                          "the folder dataset, whose every image folder is a class; choose a run "
                          "directory outside it")
