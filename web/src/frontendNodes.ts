// Nodes that live only in the editor (never sent to the server): notes, reroutes, primitives.
import { LGraphNode, LiteGraph, type LLink } from "@comfyorg/litegraph";
import type { ISlotType } from "@comfyorg/litegraph";
import { nodeDef, orderedInputs } from "./nodeTypes";
import { MultilineWidget } from "./textWidget";
import { addInputWidget } from "./widgets";

export interface VirtualNode extends LGraphNode {
  isVirtualNode?: boolean;
}

export function isVirtual(node: LGraphNode): boolean {
  return Boolean((node as VirtualNode).isVirtualNode);
}

class NoteNode extends LGraphNode {
  static override title = "Note";
  static category = "utils";
  isVirtualNode = true;
  override color = "#432";
  override bgcolor = "#653";

  constructor(title: string) {
    super(title);
    this.addCustomWidget(new MultilineWidget(this, "text", "", "Write a note"));
    this.serialize_widgets = true;
    this.setSize([300, 120]);
  }
}

class RerouteNode extends LGraphNode {
  static override title = "Reroute";
  static category = "utils";
  isVirtualNode = true;

  constructor(title: string) {
    super(title);
    this.addInput("", "*");
    this.addOutput("", "*");
    this.setSize([75, 26]);
  }
}

/** A value widget copied from the input it feeds, so one value can drive several nodes. */
class PrimitiveNode extends LGraphNode {
  static override title = "Primitive";
  static category = "utils";
  isVirtualNode = true;

  constructor(title: string) {
    super(title);
    this.addOutput("connect to widget input", "*");
    this.serialize_widgets = true;
  }

  override onConnectionsChange(side: ISlotType, _slot: number, connected: boolean, link: LLink | null | undefined): void {
    if (side !== LiteGraph.OUTPUT || !connected || !link || this.widgets?.length) return;
    const target = this.graph?.getNodeById(link.target_id);
    const input = target?.inputs[link.target_slot];
    const def = target && nodeDef(target);
    const name = input?.widget?.name;
    const spec = def && orderedInputs(def).find(([inputName]) => inputName === name)?.[1];
    if (!target || !input || !spec) return;
    const widget = addInputWidget(this, "value", spec);
    const source = target.widgets?.find((w) => w.name === name);
    if (source) widget.value = source.value;
    this.outputs[0].type = input.type;
    this.outputs[0].name = String(input.type);
    this.title = name ?? this.title;
    this.setSize(this.computeSize());
  }
}

export function registerFrontendNodes(): void {
  const markdown = class extends NoteNode {};
  const types: [string, typeof LGraphNode & { category?: string }][] = [
    ["Note", NoteNode],
    ["MarkdownNote", markdown],
    ["Reroute", RerouteNode],
    ["PrimitiveNode", PrimitiveNode],
  ];
  for (const [type, nodeClass] of types) {
    LiteGraph.registerNodeType(type, nodeClass);
    nodeClass.category = "utils"; // registerNodeType resets it from the type name
  }
  markdown.skip_list = true; // ComfyUI's Markdown note loads and saves, but the menu offers one Note
}
