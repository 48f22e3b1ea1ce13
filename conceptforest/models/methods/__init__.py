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
