"""Conditioning nodes: text encoding and combining, areas and masks."""
