"""LLM clients shared by the stages: the vision LLM (images as content parts) and its answer types.

The text client used for concept trees and descriptor sets lives in :mod:`conceptforest.concepts.llm`.
"""

from conceptforest.llm.vision_types import VisionAnswer, VisionLLM

__all__ = ["VisionAnswer", "VisionLLM"]
