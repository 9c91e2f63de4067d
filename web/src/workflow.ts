// Workflows in and out: the default graph, UI-format JSON (v0.4 and v1), API-format JSON, PNG metadata.
import { LGraph, LiteGraph, type LGraphNode } from "@comfyorg/litegraph";
import type { ISerialisedGraph, SerialisableGraph } from "@comfyorg/litegraph";
import type { ObjectInfo } from "./api";
import { pngTextChunks } from "./png";
import { SHIPPED_CHECKPOINT, SHIPPED_NOTE } from "./shipped";
import { comboValues } from "./widgets";

export type UiWorkflow = ISerialisedGraph | SerialisableGraph;
export type ApiWorkflow = Record<string, { class_type: string; inputs: Record<string, unknown>; _meta?: { title?: string } }>;
export type Workflow = { ui: UiWorkflow } | { api: ApiWorkflow };

// Loom's shipped model only knows its shapes grammar (docs/default-model.md); real checkpoints get a
// prompt of the kind people write.
const SHIPPED_PROMPTS = { positive: "a large red circle on the left", negative: "" };
const GENERAL_PROMPTS = {
  positive: "a lighthouse on a rocky coast at dawn, watercolor, soft light",
  negative: "blurry, text, watermark",
};

function setWidget(node: LGraphNode, name: string, value: unknown): void {
  const widget = node.widgets?.find((w) => w.name === name);
  if (widget) widget.value = value as never;
}

function add(graph: LGraph, type: string, pos: [number, number], values: Record<string, unknown> = {}): LGraphNode {
  const node = LiteGraph.createNode(type);
  if (!node) throw new Error(`node type ${type} is not available`);
  node.pos = pos;
  graph.add(node);
  for (const [name, value] of Object.entries(values)) setWidget(node, name, value);
  return node;
}

/** Connects by input name: every widget has a socket too, so input indices are not the spec's. */
function link(from: LGraphNode, output: number, to: LGraphNode, input: string): void {
  from.connect(output, to, to.findInputSlot(input));
}

/** The checkpoint the default graph uses: Loom's shipped default first, else the first one listed. */
export function defaultCheckpoint(info: ObjectInfo): string | undefined {
  const spec = info.CheckpointLoaderSimple?.input.required?.ckpt_name;
  const names = spec ? comboValues(spec).map(String) : [];
  return names.find((name) => SHIPPED_CHECKPOINT.test(name)) ?? names[0];
}

/** ComfyUI's text-to-image graph, or a model-free one when no checkpoint loader is available. */
export function buildDefaultGraph(graph: LGraph, info: ObjectInfo): void {
  graph.clear();
  const checkpoint = defaultCheckpoint(info);
  const sd = ["CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode", "SaveImage"].every((t) => t in info);
  if (checkpoint && sd) {
    const prompts = SHIPPED_CHECKPOINT.test(checkpoint) ? SHIPPED_PROMPTS : GENERAL_PROMPTS;
    const loader = add(graph, "CheckpointLoaderSimple", [40, 260], { ckpt_name: checkpoint });
    const positive = add(graph, "CLIPTextEncode", [420, 80], { text: prompts.positive });
    const negative = add(graph, "CLIPTextEncode", [420, 340], { text: prompts.negative });
    const latent = add(graph, "EmptyLatentImage", [470, 600], { width: 64, height: 64, batch_size: 1 });
    const sampler = add(graph, "KSampler", [880, 180], {
      seed: Math.floor(Math.random() * 2 ** 40),
      steps: 20,
      cfg: 7,
      sampler_name: "euler",
      scheduler: "normal",
      denoise: 1,
    });
    const decode = add(graph, "VAEDecode", [1240, 180]);
    const save = add(graph, "SaveImage", [1480, 180], { filename_prefix: "Loom" });
    if (SHIPPED_CHECKPOINT.test(checkpoint)) {
      const note = add(graph, "Note", [40, 420], { text: SHIPPED_NOTE });
      note.title = "About the shipped model";
      note.setSize([380, 230]);
    }
    positive.setSize([380, 220]);
    negative.setSize([380, 200]);
    save.setSize([320, 360]);
    link(loader, 1, positive, "clip");
    link(loader, 1, negative, "clip");
    link(loader, 0, sampler, "model");
    link(positive, 0, sampler, "positive");
    link(negative, 0, sampler, "negative");
    link(latent, 0, sampler, "latent_image");
    link(sampler, 0, decode, "samples");
    link(loader, 2, decode, "vae");
    link(decode, 0, save, "images");
    return;
  }
  const empty = add(graph, "EmptyImage", [60, 120], { width: 64, height: 64, batch_size: 1, color: 0x3366cc });
  const invert = add(graph, "ImageInvert", [420, 120]);
  const save = add(graph, "SaveImage", [700, 120], { filename_prefix: "Loom" });
  save.setSize([320, 360]);
  link(empty, 0, invert, "image");
  link(invert, 0, save, "images");
}

/** Builds a graph from an API-format prompt, laying nodes out in columns by their depth. */
export function loadApiWorkflow(graph: LGraph, prompt: ApiWorkflow): void {
  graph.clear();
  const nodes = new Map<string, LGraphNode>();
  const depth = new Map<string, number>();
  const depthOf = (id: string, trail = new Set<string>()): number => {
    if (depth.has(id)) return depth.get(id)!;
    if (trail.has(id) || !prompt[id]) return 0;
    trail.add(id);
    const parents = Object.values(prompt[id].inputs ?? {}).filter(isLink).map((link) => depthOf(String(link[0]), trail) + 1);
    depth.set(id, Math.max(0, ...parents));
    return depth.get(id)!;
  };
  const rows = new Map<number, number>();
  for (const [id, entry] of Object.entries(prompt)) {
    const column = depthOf(id);
    const row = rows.get(column) ?? 0;
    const node = LiteGraph.createNode(entry.class_type) ?? LiteGraph.createNode("Note")!;
    node.id = Number(id);
    node.pos = [40 + column * 380, 40 + row];
    if (entry._meta?.title) node.title = entry._meta.title;
    graph.add(node);
    if (!node.type || node.type !== entry.class_type) setWidget(node, "text", `Missing node type: ${entry.class_type}`);
    for (const [name, value] of Object.entries(entry.inputs ?? {})) if (!isLink(value)) setWidget(node, name, value);
    rows.set(column, row + node.size[1] + 60);
    nodes.set(id, node);
  }
  for (const [id, entry] of Object.entries(prompt)) {
    const target = nodes.get(id)!;
    for (const [name, value] of Object.entries(entry.inputs ?? {})) {
      if (!isLink(value)) continue;
      const source = nodes.get(String(value[0]));
      const slot = target.inputs.findIndex((input) => input.name === name);
      if (source && slot >= 0) source.connect(value[1], target, slot);
    }
  }
}

function isLink(value: unknown): value is [string | number, number] {
  return Array.isArray(value) && value.length === 2 && typeof value[1] === "number";
}

function isUiWorkflow(data: unknown): data is UiWorkflow {
  return typeof data === "object" && data !== null && Array.isArray((data as { nodes?: unknown }).nodes);
}

function isApiWorkflow(data: unknown): data is ApiWorkflow {
  if (typeof data !== "object" || data === null || Array.isArray(data)) return false;
  const values = Object.values(data);
  return values.length > 0 && values.every((v) => typeof v === "object" && v !== null && "class_type" in v);
}

export function parseWorkflow(data: unknown): Workflow {
  if (isUiWorkflow(data)) return { ui: data };
  if (isApiWorkflow(data)) return { api: data };
  throw new Error("this JSON is neither a UI-format nor an API-format workflow");
}

/** Reads a dropped or opened file: JSON (either format) or a PNG with `workflow` / `prompt` chunks. */
export async function readWorkflowFile(file: File): Promise<Workflow> {
  if (file.type === "image/png" || file.name.toLowerCase().endsWith(".png")) {
    const chunks = pngTextChunks(await file.arrayBuffer());
    if (chunks.workflow) return { ui: JSON.parse(chunks.workflow) };
    if (chunks.prompt) return { api: JSON.parse(chunks.prompt) };
    throw new Error(`${file.name} holds no workflow`);
  }
  return parseWorkflow(JSON.parse(await file.text()));
}
