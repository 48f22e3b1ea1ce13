"""conceptforest: interpretable image classification with LLM concept trees, CLIP scores and Random Forests.

The public names are imported on first use, so ``import conceptforest`` (and ``conceptforest --help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from conceptforest._version import package_version
from conceptforest.errors import BadInputError, ConceptforestError, LLMError, TreeValidationError

if TYPE_CHECKING:
    from conceptforest.cache import DiskCache, conceptforest_home
    from conceptforest.concepts import (
        Concept,
        ConceptTree,
        GenerationLimits,
        LLMClient,
        Part,
        extend_tree,
        format_tree,
        generate_tree,
        read_labels,
        render_tree,
        template_tree,
    )
    from conceptforest.config import RunConfig, load_config

__version__ = package_version() or "0+unknown"

_LAZY = {
    "DiskCache": "conceptforest.cache",
    "conceptforest_home": "conceptforest.cache",
    "RunConfig": "conceptforest.config",
    "load_config": "conceptforest.config",
    **{
        name: "conceptforest.concepts"
        for name in (
            "Concept",
            "ConceptTree",
            "GenerationLimits",
            "LLMClient",
            "Part",
            "extend_tree",
            "format_tree",
            "generate_tree",
            "read_labels",
            "render_tree",
            "template_tree",
        )
    },
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'conceptforest' has no attribute {name!r}")


__all__ = [
    "BadInputError",
    "Concept",
    "ConceptTree",
    "ConceptforestError",
    "DiskCache",
    "GenerationLimits",
    "LLMClient",
    "LLMError",
    "Part",
    "RunConfig",
    "TreeValidationError",
    "__version__",
    "conceptforest_home",
    "extend_tree",
    "format_tree",
    "generate_tree",
    "load_config",
    "read_labels",
    "render_tree",
    "template_tree",
]
