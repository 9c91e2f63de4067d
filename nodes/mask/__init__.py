"""Mask nodes: making, cutting, combining and reshaping MASKs (float tensors [batch, height, width])."""
