"""Planning: spec + key -> source map. Pure functions, no pixels touched."""

from fastmix.plan.labels import encode_labels
from fastmix.plan.planner import Plan, plan_window

__all__ = ["Plan", "encode_labels", "plan_window"]
