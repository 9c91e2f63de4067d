"""Image nodes: making, transforming, loading and saving images."""
