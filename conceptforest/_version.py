"""The installed package version, and the versions of the libraries that shape results."""

from __future__ import annotations

from importlib import metadata

_TRACKED = (
    "conceptforest",
    "openai",
    "pydantic",
    "pydot",
    "torch",
    "open_clip_torch",
    "scikit-learn",
    "shap",
)


def package_version(name: str = "conceptforest") -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries recorded in every artefact's provenance."""
    return {name: package_version(name) for name in _TRACKED}
