"""Stage 3: the ConceptForestClassifier, zero-shot and probe baselines, model bundles. Not built yet (issue 4)."""
