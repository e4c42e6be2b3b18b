"""The face mesh and what is computed from it alone: the UV atlas, rasterising, unwrapping a photo into a UV
map, head pose, rendering a textured face. No learning, no files but the bundled canonical mesh (assets/)."""
