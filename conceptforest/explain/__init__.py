"""Stage 4: importance, confusion, SHAP and reports. Not built yet (issue 4)."""
