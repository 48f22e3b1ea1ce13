"""Errors that carry a fix for the user.

Every error the user can cause (a wrong path, a malformed tree, an LLM that never gave a valid answer) is a
:class:`ConceptforestError`. The CLI turns it into a one-paragraph message and exit code 2.
"""

from __future__ import annotations


class ConceptforestError(Exception):
    """A problem with the user's input or environment, with a suggested fix.

    Parameters
    ----------
    message : str
        What went wrong, naming the file, value or step.
    hint : str, optional
        How to fix it.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} Fix: {self.hint}" if self.hint else self.message


class BadInputError(ConceptforestError):
    """A file, value or option given by the user is wrong."""


class EstimatorInputError(BadInputError, ValueError):
    """Input refused by an estimator; a ``ValueError`` too, as scikit-learn's estimator contract expects."""


class LLMError(ConceptforestError):
    """The LLM never produced a valid answer, or the server could not be reached."""

    tokens: int = 0  # tokens the failed call spent (its attempts and repairs), when known
    fatal: bool = False  # the server refused the key or the model (401/403/404): no other request can succeed


class TreeValidationError(BadInputError):
    """A concept tree (generated or hand-edited) breaks the tree's rules."""
