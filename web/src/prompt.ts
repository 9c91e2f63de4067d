// Converts the canvas graph to an API-format prompt, as ComfyUI's frontend does: widget values become
// inputs, links become [node id, output slot]; muted nodes are left out, bypassed ones pass through.
import { LGraphEventMode, type LGraph, type LGraphNode, type LLink } from "@comfyorg/litegraph";
import { isVirtual } from "./frontendNodes";
import { nodeDef, orderedInputs } from "./nodeTypes";

export type ApiPrompt = Record<string, { class_type: string; inputs: Record<string, unknown>; _meta: { title: string } }>;

type Source = { node: LGraphNode; slot: number } | { value: unknown } | null;

/** Follows a link upstream through reroutes, primitives and bypassed nodes to what really feeds it. */
function resolve(graph: LGraph, link: LLink | undefined, seen = new Set<LGraphNode>()): Source {
  if (!link) return null;
  const node = graph.getNodeById(link.origin_id);
  if (!node || seen.has(node) || node.mode === LGraphEventMode.NEVER) return null;
  seen.add(node);
  if (node.type === "PrimitiveNode") return node.widgets?.length ? { value: node.widgets[0].value } : null;
  if (node.type === "Reroute") return resolve(graph, linkOf(graph, node, 0), seen);
  if (node.mode === LGraphEventMode.BYPASS) {
    const type = node.outputs[link.origin_slot]?.type;
    const matches = (i: number) => node.inputs[i]?.link != null && node.inputs[i].type === type;
    const index = matches(link.origin_slot) ? link.origin_slot : node.inputs.findIndex((_, i) => matches(i));
    return index < 0 ? null : resolve(graph, linkOf(graph, node, index), seen);
  }
  return { node, slot: link.origin_slot };
}

function linkOf(graph: LGraph, node: LGraphNode, slot: number): LLink | undefined {
  const id = node.inputs[slot]?.link;
  return id == null ? undefined : graph.links.get(id);
}

export function isExecutable(node: LGraphNode): boolean {
  return !isVirtual(node) && node.mode !== LGraphEventMode.NEVER && node.mode !== LGraphEventMode.BYPASS;
}

export function missingNodeTypes(graph: LGraph): string[] {
  const types = graph.nodes.filter((node) => isExecutable(node) && !nodeDef(node)).map((node) => String(node.type));
  return [...new Set(types)];
}

export function graphToPrompt(graph: LGraph): ApiPrompt {
  const prompt: ApiPrompt = {};
  for (const node of graph.nodes) {
    const def = nodeDef(node);
    if (!def || !isExecutable(node)) continue;
    const inputs: Record<string, unknown> = {};
    for (const [name] of orderedInputs(def)) {
      const slot = node.inputs.findIndex((input) => input.name === name || input.widget?.name === name);
      if (slot >= 0 && node.inputs[slot].link != null) {
        const source = resolve(graph, linkOf(graph, node, slot));
        if (source && "value" in source) inputs[name] = source.value;
        else if (source) inputs[name] = [String(source.node.id), source.slot];
        continue;
      }
      const widget = node.widgets?.find((w) => w.name === name);
      if (widget) inputs[name] = widget.value;
    }
    prompt[String(node.id)] = { class_type: def.name, inputs, _meta: { title: node.title } };
  }
  return prompt;
}
