// Turns /object_info into LiteGraph node classes: typed sockets, widgets with sockets beside them.
import { LGraphNode, LiteGraph, RenderShape } from "@comfyorg/litegraph";
import type { ISerialisedNode } from "@comfyorg/litegraph/dist/types/serialisation";
import type { InputSpec, NodeDef, ObjectInfo } from "./api";
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
 * Loading an older workflow replaces the inputs with the saved ones, which list only the sockets;
 * give every widget its socket back (appended, so saved link slot numbers stay right).
 */
function restoreWidgetSockets(node: LGraphNode, def: NodeDef): void {
  const specs = new Map(orderedInputs(def).map(([name, spec]) => [name, spec]));
  for (const widget of node.widgets ?? []) {
    const spec = specs.get(widget.name);
    if (!spec || node.inputs.some((input) => input.name === widget.name || input.widget?.name === widget.name)) continue;
    node.addInput(widget.name, inputType(spec), { widget: { name: widget.name } });
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

      override onConfigure(_info: ISerialisedNode): void {
        restoreWidgetSockets(this, def);
      }
    }
    LiteGraph.registerNodeType(def.name, DefinedNode);
  }
}

/** Nodes the server does not know: draws them in red with their type so the graph still loads. */
export function markMissingNodes(nodes: LGraphNode[]): string[] {
  const missing = new Set<string>();
  for (const node of nodes) {
    if (!node.has_errors || node.constructor !== LGraphNode || !node.last_serialization) continue;
    const type = String(node.last_serialization.type);
    missing.add(type);
    node.type = type;
    node.title = `Missing: ${type}`;
    node.color = "#a33";
    node.bgcolor = "#4a1f1f";
    node.onDrawForeground = function (ctx) {
      ctx.fillStyle = "#fbb";
      ctx.font = "12px sans-serif";
      ctx.fillText("This node type is not installed", 8, this.size[1] - 8);
    };
  }
  return [...missing];
}
