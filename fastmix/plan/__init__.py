"""Planning: spec + key -> source map. Pure functions, no pixels touched."""

from fastmix.plan.labels import encode_labels
from fastmix.plan.planner import Plan, images_in_pairs, pairs_warning, plan_window

__all__ = ["Plan", "encode_labels", "images_in_pairs", "pairs_warning", "plan_window"]
