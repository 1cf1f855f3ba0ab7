"""The one loader for training recipes and generation specs: YAML files, `key=value` overrides, typed sections and
one validation pass. Imports only leaves (errors, resources, redact, model.presets); libraries load late."""

from __future__ import annotations

from .files import read_yaml
from .loader import load_recipe
from .overrides import deep_merge, parse_overrides
from .schema import TRAINING_CLASSES, Recipe, RecipeSchema, build_training_args
from .sections import DataSection, DataSource, ModelSection, RowsBatch, SpeedSection, TokensBatch
from .training import SCHEMAS, check_model

__all__ = ["SCHEMAS", "TRAINING_CLASSES", "DataSection", "DataSource", "ModelSection", "Recipe", "RecipeSchema",
           "RowsBatch", "SpeedSection", "TokensBatch",
           "build_training_args", "check_model", "deep_merge", "load_recipe", "parse_overrides", "read_yaml"]
