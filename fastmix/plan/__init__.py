"""Planning: spec + key -> everything a backend executes on one window. No pixels touched.

:mod:`fastmix.plan.planner` computes the source map, :mod:`fastmix.plan.groups` holds the
permute group rule, :mod:`fastmix.plan.hardening` draws the keyed hardening choices.
"""

from fastmix.plan.groups import images_in_pairs, pairs_warning
from fastmix.plan.labels import encode_labels
from fastmix.plan.planner import Plan, plan_window

__all__ = ["Plan", "encode_labels", "images_in_pairs", "pairs_warning", "plan_window"]
