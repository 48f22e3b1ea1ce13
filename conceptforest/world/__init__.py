"""A synthetic world with known ground truth: 2D creatures drawn with PIL from a specification of parts.

Everything measured on this world is a toy-world number: it shows whether the pipeline and its explanations
behave correctly when the embedding model really sees, and says nothing about accuracy on photos.
"""

from conceptforest.world.render import Creature, render
from conceptforest.world.sample import make_world_images, read_truth
from conceptforest.world.spec import AttributeKey, WorldSpec, load_world

__all__ = ["AttributeKey", "Creature", "WorldSpec", "load_world", "make_world_images", "read_truth", "render"]
