// ComfyUI workflows can hold subgraphs (`definitions.subgraphs`, nodes whose type is a subgraph's id).
// This canvas cannot open or queue them yet: their nodes load as placeholders that name the subgraph,
// and the definitions they use are saved back unchanged, so saving or the autosave loses nothing.
import type { LGraph, LGraphNode } from "@comfyorg/litegraph";

type SubgraphHost = Pick<LGraph, "nodes">;

function typeOf(node: LGraphNode): string {
  return String(node.last_serialization?.type ?? node.type ?? "");
}

/** The subgraph name for a node type that is a subgraph id, else undefined. */
export function subgraphName(graph: LGraph, type: string): string | undefined {
  return graph.subgraphs.get(type)?.name;
}

/** The ids of every subgraph the graph's nodes use, directly or inside other subgraphs. */
function usedSubgraphIds(graph: LGraph): Set<string> {
  const used = new Set<string>();
  const visit: SubgraphHost[] = [graph];
  for (let host = visit.shift(); host; host = visit.shift()) {
    for (const node of host.nodes) {
      const subgraph = graph.subgraphs.get(typeOf(node));
      if (!subgraph || used.has(subgraph.id)) continue;
      used.add(subgraph.id);
      visit.push(subgraph);
    }
  }
  return used;
}

/** litegraph saves only the definitions of subgraph nodes it can build; ours are placeholders. */
export function keepSubgraphDefinitions(graph: LGraph): void {
  graph.onSerialize = (data) => {
    const kept = (data.definitions?.subgraphs ?? []) as { id: string }[];
    const missing = [...usedSubgraphIds(graph)].filter((id) => !kept.some((subgraph) => subgraph.id === id));
    if (!missing.length) return;
    const definitions = missing.map((id) => graph.subgraphs.get(id)!.asSerialisable());
    data.definitions = { ...data.definitions, subgraphs: [...kept, ...definitions] } as typeof data.definitions;
  };
}
