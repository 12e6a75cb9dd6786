"""Typed, validated configuration (schema) and its loader (YAML, `base:`, `--set`, registry checks)."""
from ensemble.config.loader import (build, competition_config, dump_config, load_config, parse_overrides, read_yaml, set_dotted,
                                    to_dict)
from ensemble.config.schema import (AugmentCfg, CompetitionCfg, Config, ConfigError, FoldsCfg, HeadCfg, InputCfg,
                                    LossCfg, LRCfg, ModelCfg, OptimCfg, OutputCfg, PredictCfg, ScheduleCfg,
                                    StageCfg, TrainCfg)

__all__ = ["AugmentCfg", "CompetitionCfg", "Config", "ConfigError", "FoldsCfg", "HeadCfg", "InputCfg", "LossCfg",
           "LRCfg", "ModelCfg", "OptimCfg", "OutputCfg", "PredictCfg", "ScheduleCfg", "StageCfg", "TrainCfg",
           "build", "competition_config", "dump_config", "load_config", "parse_overrides", "read_yaml", "set_dotted", "to_dict"]
