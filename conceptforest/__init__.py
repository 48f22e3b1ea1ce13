"""conceptforest: interpretable image classification with LLM concept trees, CLIP scores and Random Forests.

Stage 1 (concept trees) is available; stages 2-4 are being built.
"""

from conceptforest._version import package_version
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
from conceptforest.errors import BadInputError, ConceptforestError, LLMError, TreeValidationError

__version__ = package_version() or "0+unknown"

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
