"""Stage 4: importance, roll-up, confusion analysis, SHAP and the report."""

from conceptforest.explain.build import compare_methods, explain_model, explain_run
from conceptforest.explain.confusion import confused_pairs, confusion_tables, top_concepts_overlap, why_a_not_b
from conceptforest.explain.importance import (
    concept_groups,
    gini_table,
    group_permutation_table,
    permutation_table,
)
from conceptforest.explain.report import Report
from conceptforest.explain.shap_values import ConceptShap, explain_shap

__all__ = [
    "ConceptShap",
    "Report",
    "compare_methods",
    "concept_groups",
    "confused_pairs",
    "confusion_tables",
    "explain_model",
    "explain_run",
    "explain_shap",
    "gini_table",
    "group_permutation_table",
    "permutation_table",
    "top_concepts_overlap",
    "why_a_not_b",
]
