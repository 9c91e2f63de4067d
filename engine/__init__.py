"""Loom's engine. Importing it arranges for a CUDA-built torchvision to import beside a CPU torch
(see engine/torchvision_compat.py); nothing else happens at import time."""

from engine import torchvision_compat as _torchvision_compat

_torchvision_compat.install()
