"""Typed run configuration: schema, YAML loading with overrides, validation."""
from rcdml.config.load import dump_config, load_config
from rcdml.config.schema import (Config, DataConfig, DistConfig, EvalConfig, LossConfig, ModelConfig,
                                 MonitorConfig, OptimConfig, TrainConfig)
from rcdml.config.typed import ConfigError

__all__ = ["Config", "ConfigError", "DataConfig", "DistConfig", "EvalConfig", "LossConfig",
           "ModelConfig", "MonitorConfig", "OptimConfig", "TrainConfig", "dump_config", "load_config"]
