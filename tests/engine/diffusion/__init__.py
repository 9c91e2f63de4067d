"""Tests of engine.diffusion: the MODEL object model, its patches and the guiders."""
