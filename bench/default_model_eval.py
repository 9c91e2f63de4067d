"""Quality and speed of the shipped default model: per-attribute accuracy, binding, time per image, load time.

Samples prompts of the caption grammar the way KSampler does (euler, 20 steps, CFG 7 unless told otherwise)
and judges the images with `training.classify`. Run: `python bench/default_model_eval.py [--count N ...]`;
the options are `training.eval`'s (see docs/default-model.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.eval import main

if __name__ == "__main__":
    main()
