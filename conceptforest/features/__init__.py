"""Stage 2: images and a ConceptTree become a FeatureMatrix of CLIP concept scores. Not built yet (issue 3)."""
