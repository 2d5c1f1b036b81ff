"""Privacy and utility audit: what a mixed set leaks, measured with a restoration attack.

Needs the ``audit`` extra (scipy, scikit-image, scikit-learn): ``pip install 'fastmix[audit]'``.
"""

from fastmix.audit.attack import Restoration, null_attack, restoration_attack
from fastmix.audit.auditing import audit_arrays, audit_stores
from fastmix.audit.edges import EdgeScorer, normalise_second_best, prediction_boundary_score
from fastmix.audit.groundtruth import GroundTruth, locate_blocks
from fastmix.audit.report import AuditReport, meets, verdict
from fastmix.audit.utility import utility_check

__all__ = [
    "AuditReport",
    "EdgeScorer",
    "GroundTruth",
    "Restoration",
    "audit_arrays",
    "audit_stores",
    "locate_blocks",
    "meets",
    "normalise_second_best",
    "null_attack",
    "prediction_boundary_score",
    "restoration_attack",
    "utility_check",
    "verdict",
]
