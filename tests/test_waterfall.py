"""The misclassified examples' waterfalls: shap's additivity (base + contributions = the probability shown) and
one shared scale for the true and the predicted label."""

from __future__ import annotations

import numpy as np
import pandas as pd

from conceptforest.explain import plots
from conceptforest.explain.shap_values import explain_shap
from conceptforest.models.forest import ConceptForestClassifier


def test_both_waterfalls_end_at_the_models_probability_on_one_scale() -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(60, 12)), columns=[f"part:attr=v{i}" for i in range(12)])
    y = np.where(X["part:attr=v0"] > 0, "pug", np.where(X["part:attr=v1"] > 0, "husky", "beagle"))
    model = ConceptForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    explanation = explain_shap(model, X.iloc[:5])
    proba = model.predict_proba(X.iloc[:1])[0]
    figure = plots.contribution_pair(explanation, 0, "pug", "husky", top=4)
    left, right = figure.axes[:2]
    assert left.get_xlim() == right.get_xlim()  # one shared scale
    for axis, label in ((left, "pug"), (right, "husky")):
        shown = float(axis.get_title().rsplit("P = ", 1)[1])
        assert shown == round(float(proba[list(model.classes_).index(label)]), 3)
        assert len(axis.get_yticklabels()) == 5 and "8 other concepts" in axis.get_yticklabels()[0].get_text()
    plots.close(figure)
