"""ConceptForestClassifier: a Random Forest over concept scores, following scikit-learn's estimator contract."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.utils.validation import check_is_fitted, validate_data

from conceptforest.errors import EstimatorInputError


class ConceptForestClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A Random Forest over a concept score matrix.

    Parameters
    ----------
    n_estimators : int, default=500
    max_depth : int, optional
    min_samples_leaf : int, default=1
    max_features : {"sqrt", "log2"}, int, float or None, default="sqrt"
    class_weight : {"balanced", "balanced_subsample"}, dict or None
    param_grid : dict, optional
        When given, ``fit`` runs a grid search with stratified ``cv``-fold cross-validation over these forest
        parameters and keeps the best (``best_params_``, ``cv_results_``).
    cv : int, default=5
    n_jobs : int, optional
    random_state : int, default=0

    Attributes
    ----------
    forest_ : RandomForestClassifier
    classes_ : ndarray of labels
    feature_names_in_ : ndarray of concept ids (when fitted on a DataFrame)
    n_features_in_ : int
    feature_importances_ : ndarray, Gini (MDI) importances computed on the training data
    best_params_ : dict (empty without ``param_grid``)

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).random((60, 4)); y = np.where(X[:, 0] > 0.5, "a", "b")
    >>> clf = ConceptForestClassifier(n_estimators=20).fit(X, y)
    >>> clf.predict(X[:3]).tolist() == y[:3].tolist()
    True
    """

    def __init__(
        self,
        n_estimators: int = 500,
        *,
        max_depth: int | None = None,
        min_samples_leaf: int = 1,
        max_features: str | int | float | None = "sqrt",
        class_weight: str | dict[Any, float] | None = None,
        param_grid: dict[str, list[Any]] | None = None,
        cv: int = 5,
        n_jobs: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.class_weight = class_weight
        self.param_grid = param_grid
        self.cv = cv
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _forest(self) -> RandomForestClassifier:
        return RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            class_weight=self.class_weight,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        )

    def fit(self, X: Any, y: Any) -> ConceptForestClassifier:
        X, y = validate_data(self, X, y, dtype=np.float32)
        labels, counts = np.unique(y, return_counts=True)
        if len(labels) < 2:
            raise EstimatorInputError(
                f"Training needs at least 2 labels; got 1 class only: {labels.tolist()}.",
                hint="check the split: every label needs training images.",
            )
        if self.param_grid:
            self._check_fold_counts(labels, counts)
            folds = StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=self.random_state)
            search = GridSearchCV(self._forest(), self.param_grid, cv=folds, n_jobs=self.n_jobs, refit=True)
            search.fit(X, y)
            self.forest_ = search.best_estimator_
            self.best_params_ = dict(search.best_params_)
            self.cv_results_ = search.cv_results_
        else:
            self.forest_ = self._forest().fit(X, y)
            self.best_params_ = {}
        self.classes_ = self.forest_.classes_
        return self

    def _check_fold_counts(self, labels: np.ndarray, counts: np.ndarray) -> None:
        """Stratified k-fold needs at least ``cv`` rows of every label: name each label that has fewer."""
        short = [
            f"{label!r} has {count} training row(s)"
            for label, count in zip(labels, counts, strict=True)
            if count < self.cv
        ]
        if short:
            raise EstimatorInputError(
                f"Label {'; label '.join(short)}; {self.cv}-fold cross-validation needs at least as many as folds.",
                hint="lower cv, add images of those labels, or train without param_grid.",
            )

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float32, reset=False)
        return self.forest_.predict_proba(X)  # type: ignore[no-any-return]

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]  # type: ignore[no-any-return]

    @property
    def feature_importances_(self) -> np.ndarray:
        check_is_fitted(self)
        return self.forest_.feature_importances_  # type: ignore[no-any-return]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
