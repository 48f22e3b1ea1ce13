"""Stage 1: concept trees from an LLM (or the template vocabulary), and their pictures."""

from conceptforest.concepts.generate import GenerationLimits, extend_tree, generate_tree, read_labels
from conceptforest.concepts.llm import LLMClient
from conceptforest.concepts.prompts import PromptTemplate, load_prompt
from conceptforest.concepts.render import RenderResult, build_graph, render_tree
from conceptforest.concepts.template import template_tree
from conceptforest.concepts.tree import Concept, ConceptTree, Leakage, Part, Provenance, format_tree

__all__ = [
    "Concept",
    "ConceptTree",
    "GenerationLimits",
    "LLMClient",
    "Leakage",
    "Part",
    "PromptTemplate",
    "Provenance",
    "RenderResult",
    "build_graph",
    "extend_tree",
    "format_tree",
    "generate_tree",
    "load_prompt",
    "read_labels",
    "render_tree",
    "template_tree",
]
