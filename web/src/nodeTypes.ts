// Turns /object_info into LiteGraph node classes: typed sockets, widgets with sockets beside them.
import { LGraphNode, LiteGraph, RenderShape, type LGraph } from "@comfyorg/litegraph";
import type { ISerialisedNode } from "@comfyorg/litegraph/dist/types/serialisation";
import type { InputSpec, NodeDef, ObjectInfo } from "./api";
import { subgraphName } from "./subgraphs";
import { addInputWidget, hasWidget, inputType } from "./widgets";

/** Link and socket colours per type (the palette artists know from ComfyUI). */
export const TYPE_COLORS: Record<string, string> = {
  MODEL: "#B39DDB",
  CLIP: "#FFD500",
  VAE: "#FF6E6E",
  CONDITIONING: "#FFA931",
  LATENT: "#FF9CF9",
  IMAGE: "#64B5F6",
  MASK: "#81C784",
  CONTROL_NET: "#6EE7B7",
  CLIP_VISION: "#A8DADC",
  CLIP_VISION_OUTPUT: "#AD7452",
  STYLE_MODEL: "#C2FFAE",
  UPSCALE_MODEL: "#4FC3F7",
  INT: "#9EC8A2",
  FLOAT: "#A2B5E0",
  STRING: "#E0C58A",
  BOOLEAN: "#D88AA6",
  COMBO: "#B0B0B0",
};

export interface LoomNode extends LGraphNode {
  /** The /object_info definition this node was made from. */
  def?: NodeDef;
}

export function nodeDef(node: LGraphNode): NodeDef | undefined {
  return (node as LoomNode).def;
}

/** Inputs in declaration order: required then optional, as `input_order` gives them when present. */
export function orderedInputs(def: NodeDef): [string, InputSpec, boolean][] {
  const result: [string, InputSpec, boolean][] = [];
  for (const section of ["required", "optional"] as const) {
    const inputs = def.input[section] ?? {};
    const order = def.input_order?.[section] ?? Object.keys(inputs);
    for (const name of order) if (inputs[name]) result.push([name, inputs[name], section === "optional"]);
  }
  return result;
}

function buildNode(node: LGraphNode, def: NodeDef): void {
  for (const [name, spec, optional] of orderedInputs(def)) {
    const type = inputType(spec);
    const shape = optional ? RenderShape.HollowCircle : undefined;
    if (hasWidget(spec)) {
      const widget = addInputWidget(node, name, spec);
      node.addInput(name, type, { widget: { name: widget.name }, shape });
    } else {
      node.addInput(name, type, { shape });
    }
  }
  def.output.forEach((type, i) => {
    const shape = def.output_is_list?.[i] ? RenderShape.GRID : undefined;
    node.addOutput(def.output_name?.[i] ?? type, type, { shape });
  });
  node.setSize(node.computeSize());
}

/**
 * Loading a workflow replaces the inputs with the saved ones; older ones (ComfyUI 0.4) list only the
 * sockets. Give back, appended so that saved link slot numbers stay right, every input of the
 * definition the file lacks: widget sockets, and sockets the node type gained since it was saved.
 */
function restoreMissingInputs(node: LGraphNode, def: NodeDef): void {
  for (const [name, spec, optional] of orderedInputs(def)) {
    if (node.inputs.some((input) => input.name === name || input.widget?.name === name)) continue;
    const shape = optional ? RenderShape.HollowCircle : undefined;
    const widget = node.widgets?.some((w) => w.name === name);
    node.addInput(name, inputType(spec), widget ? { widget: { name }, shape } : { shape });
  }
}

export function registerNodeDefs(info: ObjectInfo): void {
  for (const def of Object.values(info)) {
    class DefinedNode extends LGraphNode {
      static override title = def.display_name || def.name;
      static category = def.category;
      def = def;

      constructor(title: string) {
        super(title);
        this.serialize_widgets = true;
        buildNode(this, def);
      }

      override configure(info: ISerialisedNode): void {
        // litegraph copies saved inputs over the constructed ones index by index, so a file that
        // lists fewer inputs than the node has would keep stale ones beside them (two `clip`
        // sockets); the saved list replaces ours instead.
        if (info.inputs) this.inputs = [];
        super.configure(info);
      }

      override onConfigure(_info: ISerialisedNode): void {
        restoreMissingInputs(this, def);
      }
    }
    LiteGraph.registerNodeType(def.name, DefinedNode);
    // registerNodeType sets the category from a "category/name" type; ours are plain names, so the
    // category (which the right-click Add Node menu lists) is restored from /object_info.
    DefinedNode.category = def.category;
  }
}

/**
 * Nodes the server does not know: drawn in red with their type (or, for a ComfyUI subgraph, its
 * name) so the graph still loads, and saved back with their data unchanged.
 */
export function markMissingNodes(graph: LGraph): string[] {
  const missing = new Set<string>();
  for (const node of graph.nodes) {
    if (!node.has_errors || node.constructor !== LGraphNode || !node.last_serialization) continue;
    const type = String(node.last_serialization.type);
    const subgraph = subgraphName(graph, type);
    missing.add(type);
    node.type = type;
    node.title = subgraph === undefined ? `Missing: ${type}` : `Subgraph: ${subgraph}`;
    const note = subgraph === undefined ? "This node type is not installed" : "Subgraphs cannot be opened or run here yet";
    node.color = "#a33";
    node.bgcolor = "#4a1f1f";
    node.onDrawForeground = function (ctx) {
      ctx.fillStyle = "#fbb";
      ctx.font = "12px sans-serif";
      ctx.fillText(note, 8, this.size[1] - 8);
    };
  }
  return [...missing];
}
