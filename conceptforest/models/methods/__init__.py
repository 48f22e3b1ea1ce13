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

# The built-in methods register themselves on import, in the comparison table's order.
BUILTIN_MODULES = ("concept", "zeroshot", "descriptions", "vision", "wdys", "controls")


def _register_builtins() -> None:
    import importlib

    for module in BUILTIN_MODULES:
        importlib.import_module(f"{__name__}.{module}")


_register_builtins()
