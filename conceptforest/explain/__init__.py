"""Stage 4: importance and rankings. Confusion analysis, SHAP and reports are not built yet (issue 4)."""

from conceptforest.explain.importance import (
    concept_groups,
    gini_table,
    group_permutation_table,
    permutation_table,
)

__all__ = ["concept_groups", "gini_table", "group_permutation_table", "permutation_table"]
