"""uvlib: complete incomplete facial UV maps of faces in-the-wild.

Conventions used everywhere in the package:
- a UV map is a float32 tensor (N, 3, S, S) with values in [0, 1];
- a mask is a float32 tensor (N, 1, S, S), 1 = texel known / observed;
- the atlas mask (S, S) marks texels that belong to the face's UV layout.
"""

__version__ = "0.1.0"
