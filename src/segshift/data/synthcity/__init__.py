"""synthcity: a deterministic procedural street-scene benchmark in CamVid's 11 classes.

Two styles of the same task: `sim` (flat, saturated, clean) and `photo` (textured, lit, blurred,
noisy, JPEG-compressed, with other layout statistics), for a fast synthetic -> real benchmark.

Example:
    >>> from segshift.data.synthcity import generate, parse_size
    >>> generate("data/synthcity_sim", "sim", n=200, size=parse_size("128x160"), seed=0)  # doctest: +SKIP
"""

from .generate import (
    CLASSES,
    GENERATOR_VERSION,
    NUM_CLASSES,
    classes_yaml,
    generate,
    parse_size,
    render_sample,
    sample_name,
)
from .styles import STYLES

__all__ = [
    "CLASSES",
    "GENERATOR_VERSION",
    "NUM_CLASSES",
    "STYLES",
    "classes_yaml",
    "generate",
    "parse_size",
    "render_sample",
    "sample_name",
]
