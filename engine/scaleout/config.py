"""The scale-out flags as the server keeps them (no Ray import here)."""

from __future__ import annotations

from dataclasses import dataclass, field

NAMESPACE = "loom"


@dataclass
class RayConfig:
    """--ray / --ray-address, --ray-workers, --worker-labels."""

    address: str | None = None
    workers: int | None = None
    # Worker index → labels (from --worker-labels "0=sdxl,fast;1=sd15"); "*" applies to every worker.
    labels: dict[str, list[str]] = field(default_factory=dict)
    namespace: str = NAMESPACE
    # "affinity" (engine.scaleout.routing.plan), or "round-robin" to compare against (bench/ray_routing.py).
    routing: str = "affinity"
    # Modules whose nodes the workers register besides the built-in ones and packs (the tests' nodes).
    node_modules: list[str] = field(default_factory=list)

    @property
    def owns_cluster(self) -> bool:
        return self.address is None


def parse_labels(text: str) -> dict[str, list[str]]:
    """`0=sdxl,fast;1=sd15;*=shared` → {"0": ["sdxl", "fast"], "1": ["sd15"], "*": ["shared"]}."""
    labels: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        index, sep, names = part.partition("=")
        if not sep or not (index.strip().isdigit() or index.strip() == "*"):
            raise ValueError(
                f"--worker-labels: {part!r} is not INDEX=LABEL[,LABEL] (e.g. 0=sdxl,fast;1=sd15)"
            )
        labels.setdefault(index.strip(), []).extend(n.strip() for n in names.split(",") if n.strip())
    return labels
