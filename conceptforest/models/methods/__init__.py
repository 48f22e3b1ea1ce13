"""Every way of classifying, as registered methods (see :mod:`conceptforest.models.methods.base`).

Importing this package registers the built-in methods, in the order the comparison table lists them.
"""

from conceptforest.models.methods.base import (
    NEED_HINTS,
    REGISTRY,
    Method,
    MethodInputs,
    MethodOutcome,
    MethodResult,
    Need,
    NotComputed,
    register,
    registered_methods,
    run_methods,
    select_methods,
)

# The built-in methods register themselves on import, in the comparison table's order.
from conceptforest.models.methods import concept, zeroshot, descriptions, controls  # noqa: E402, I001

__all__ = [
    "NEED_HINTS",
    "REGISTRY",
    "Method",
    "MethodInputs",
    "MethodOutcome",
    "MethodResult",
    "Need",
    "NotComputed",
    "register",
    "registered_methods",
    "run_methods",
    "select_methods",
]
