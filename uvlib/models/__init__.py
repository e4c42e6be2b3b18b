"""Completion models as plain objects: networks (nn.Modules) with their config dataclasses, the masked PCA,
the mean face, and model files (registry). Nothing here trains; imports only uvlib.models and uvlib.ops."""
