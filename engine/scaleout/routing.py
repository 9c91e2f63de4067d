"""Which worker runs which prompt: a pure function of the pending prompts and the workers' state.

The unit of dispatch is a whole prompt and a worker runs one prompt at a time. `plan` looks at the
first few pending prompts (a window, so that one pinned or waiting prompt cannot block the queue) and
assigns free workers in three passes:

1. Prompts skipped too often (`MAX_SKIPS`) go first, to any eligible free worker: nothing starves.
2. Affinity: in queue order, a prompt goes to a free eligible worker that already holds its models
   (checkpoint, LoRAs, ControlNets...), the one holding the most of them.
3. The rest, in queue order, go to the least loaded eligible free worker: the one whose loaded models
   the waiting prompts need least (loading there evicts nothing useful), then the one holding fewest
   models, then the one that has run fewest prompts. A prompt whose models a *busy* worker holds waits
   for it instead, unless more prompts wait for those models than workers hold them: so a model is
   loaded on a second worker only when there is work enough to need it.

Eligibility: a prompt's labels (`extra_data.worker`, a label or worker name, or a list of them) must
all be among the worker's labels or its name. Workers in a prompt's `avoid` (where it already died)
are used only when no other eligible worker exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf", ".pt2")
# Loader inputs that name a model file (ComfyUI's names), whatever their extension.
MODEL_INPUTS = frozenset(
    {
        "ckpt_name",
        "lora_name",
        "control_net_name",
        "vae_name",
        "unet_name",
        "clip_name",
        "clip_name1",
        "clip_name2",
        "clip_name3",
        "model_name",
        "style_model_name",
        "gligen_name",
        "upscale_model_name",
    }
)
# A prompt passed over this many times while later ones started is dispatched before any other.
MAX_SKIPS = 8


def prompt_models(prompt: dict[str, Any]) -> frozenset[str]:
    """The model files a prompt loads: literal loader inputs (`ckpt_name`, `lora_name`, ...) and any
    other `*_name` input whose value is a model file name."""
    names: set[str] = set()
    for node in prompt.values():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        for key, value in inputs.items():
            if not isinstance(value, str) or not value:
                continue
            if key in MODEL_INPUTS or (key.endswith("_name") and value.lower().endswith(MODEL_EXTENSIONS)):
                names.add(value)
    return frozenset(names)


def prompt_labels(extra_data: dict[str, Any]) -> frozenset[str]:
    """`extra_data.worker`: one label (or worker name) or a list; every one must match."""
    wanted = extra_data.get("worker")
    if isinstance(wanted, str):
        return frozenset({wanted}) if wanted else frozenset()
    if isinstance(wanted, list):
        return frozenset(str(label) for label in wanted if str(label))
    return frozenset()


@dataclass(frozen=True)
class PendingPrompt:
    prompt_id: str
    models: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    # Workers this prompt died on: used only when no other eligible worker exists.
    avoid: frozenset[str] = frozenset()
    skipped: int = 0


@dataclass
class WorkerView:
    name: str
    labels: frozenset[str] = frozenset()
    busy: bool = False
    models: frozenset[str] = frozenset()
    prompts_run: int = 0
    # A worker that is starting, restarting or unreachable takes nothing.
    alive: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def eligible(prompt: PendingPrompt, worker: WorkerView) -> bool:
    return worker.alive and prompt.labels <= (worker.labels | {worker.name})


def can_ever_run(prompt: PendingPrompt, workers: Iterable[WorkerView]) -> bool:
    """Whether any worker (busy or not, alive or restarting) matches the prompt's labels."""
    return any(prompt.labels <= (w.labels | {w.name}) for w in workers)


def plan(
    pending: Sequence[PendingPrompt], workers: Sequence[WorkerView], window: int | None = None
) -> list[tuple[str, str]]:
    """(prompt_id, worker name) pairs to start now; `pending` is in queue order."""
    free = [w for w in workers if w.alive and not w.busy]
    if not free or not pending:
        return []
    considered = list(pending[: window or max(2 * len(workers), 4)])
    assigned: list[tuple[str, str]] = []

    def take(prompt: PendingPrompt, worker: WorkerView) -> None:
        assigned.append((prompt.prompt_id, worker.name))
        free.remove(worker)
        considered.remove(prompt)

    for prompt in [p for p in considered if p.skipped >= MAX_SKIPS]:
        choices = _choices(prompt, free)
        if choices:
            take(prompt, min(choices, key=lambda w: _load(w, considered)))
    for prompt in list(considered):
        holders = [w for w in _choices(prompt, free) if prompt.models & w.models]
        if holders:
            take(prompt, min(holders, key=lambda w: (-len(prompt.models & w.models), _load(w, considered))))
    for prompt in list(considered):
        choices = _choices(prompt, free)
        if not choices or _should_wait(prompt, considered, workers):
            continue
        take(prompt, min(choices, key=lambda w: _load(w, considered)))
    return assigned


def _choices(prompt: PendingPrompt, free: list[WorkerView]) -> list[WorkerView]:
    matching = [w for w in free if eligible(prompt, w)]
    preferred = [w for w in matching if w.name not in prompt.avoid]
    return preferred or matching


def _load(worker: WorkerView, waiting: Sequence[PendingPrompt]) -> tuple[int, int, int, str]:
    """Smaller is less loaded: waiting prompts that need this worker's models, models it holds,
    prompts it has run, then its name (a stable tie-break)."""
    needed = sum(1 for p in waiting if p.models & worker.models)
    return (needed, len(worker.models), worker.prompts_run, worker.name)


def _should_wait(
    prompt: PendingPrompt, waiting: Sequence[PendingPrompt], workers: Sequence[WorkerView]
) -> bool:
    """A prompt waits for a busy worker holding all its models, unless more prompts need those models
    than there are workers holding them (then a second copy is worth loading)."""
    if not prompt.models:
        return False
    holders = [w for w in workers if w.alive and w.busy and eligible(prompt, w) and prompt.models <= w.models]
    if not holders:
        return False
    demand = sum(1 for p in waiting if p.models == prompt.models)
    return demand <= len(holders)


class RoundRobin:
    """The baseline the bench compares against: the head of the queue goes to the next free worker in
    turn, whatever it holds."""

    def __init__(self) -> None:
        self._turn = 0

    def plan(self, pending: Sequence[PendingPrompt], workers: Sequence[WorkerView]) -> list[tuple[str, str]]:
        assigned: list[tuple[str, str]] = []
        queue = list(pending)
        for _ in range(len(workers)):
            if not queue:
                break
            worker = workers[self._turn % len(workers)]
            self._turn += 1
            if worker.alive and not worker.busy and eligible(queue[0], worker):
                assigned.append((queue.pop(0).prompt_id, worker.name))
        return assigned
