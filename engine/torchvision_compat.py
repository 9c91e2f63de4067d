"""Keep a CUDA-built torchvision importable beside a CPU-only torch.

PyPI's torchvision 0.28.0 is built against CUDA. Beside the CPU torch of `torch==2.13.0+cpu` its
compiled extension (`torchvision/_C.so`) fails to load, and then `import torchvision` itself fails:
its `_meta_registrations` module registers fake kernels for `torchvision::nms` and
`torchvision::qnms` without first checking that those operators exist. transformers and diffusers
import torchvision whenever it is installed, and spandrel (the upscale-model library) always does,
so one broken extension would take the whole Stable Diffusion path down.

The fix is narrow: right before torchvision's first import, try to load its extension; only when
that fails, declare the two operator schemas (no kernels). torchvision then imports; its C++ ops
(nms, roi_align, deform_conv2d...) stay unusable, and nothing Loom runs calls them — upscale models
are plain convolutions and attention. On a machine where torch and torchvision match (a user's CUDA
box, or a CPU torchvision build) the extension loads and this module changes nothing.

`install()` adds an import hook that does this lazily (torch is not imported until torchvision is);
`engine/__init__.py` installs it so every entry point (server, CLI, tests) is covered.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

# Kept alive for the life of the process: dropping a torch.library.Library removes its definitions.
_declared: Any = None
# Why the extension did not load, for diagnostics (None: it loaded, or the hook has not fired).
extension_error: str | None = None

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


def _extension_file(package_dir: Path) -> Path | None:
    candidates = sorted(package_dir.glob("_C*.so")) + sorted(package_dir.glob("_C*.pyd"))
    return candidates[0] if candidates else None


def _operator_exists(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def prepare(package_dir: Path) -> None:
    """Load torchvision's extension from `package_dir`; if it cannot load, declare the op schemas
    its import needs. Safe to call more than once."""
    global _declared, extension_error
    import torch

    extension = _extension_file(package_dir)
    if extension is None:
        return
    try:
        torch.ops.load_library(str(extension))
        return
    except (OSError, RuntimeError) as error:
        extension_error = f"{extension.name}: {error}"
    missing = [schema for schema in _SCHEMAS if not _operator_exists(schema.split("(", 1)[0])]
    if not missing:
        return
    library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in missing:
        library.define(schema)
    _declared = library


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    """Fires once, on the first `import torchvision`, then steps aside."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.submodule_search_locations:
            prepare(Path(next(iter(spec.submodule_search_locations))))
        return spec


def install() -> None:
    """Arrange for `prepare` to run before torchvision's first import (no-op once it is imported)."""
    if "torchvision" in sys.modules or any(isinstance(f, _BeforeTorchvision) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _BeforeTorchvision())
