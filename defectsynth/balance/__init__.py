"""Rebalancing a long-tailed training set: data-level strategies, training-time samplers and losses."""

from defectsynth.balance.config import RebalanceConfig, make_config
from defectsynth.balance.losses import make_loss
from defectsynth.balance.rebalance import (
    ORIGINAL,
    RebalanceResult,
    arms_problem,
    load_training_set,
    rebalance,
)
from defectsynth.balance.samplers import make_sampler
from defectsynth.balance.table import render as render_table

__all__ = ["ORIGINAL", "RebalanceConfig", "RebalanceResult", "arms_problem", "load_training_set", "make_config",
           "make_loss", "make_sampler", "rebalance", "render_table"]
