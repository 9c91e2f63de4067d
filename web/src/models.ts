// Model files a workflow names that the server does not have, and the folder each one belongs in.
import type { LGraph, LGraphNode } from "@comfyorg/litegraph";
import { nodeDef } from "./nodeTypes";
import { isExecutable } from "./prompt";
import { subgraphName } from "./subgraphs";

/** ComfyUI's loaders name their file inputs consistently; each name maps to its `models/` folder. */
const FOLDER_BY_INPUT: Record<string, string> = {
  ckpt_name: "checkpoints",
  vae_name: "vae",
  lora_name: "loras",
  control_net_name: "controlnet",
  unet_name: "diffusion_models",
  clip_name: "text_encoders",
  clip_name1: "text_encoders",
  clip_name2: "text_encoders",
  clip_name3: "text_encoders",
  style_model_name: "style_models",
  gligen_name: "gligen",
  hypernetwork_name: "hypernetworks",
  upscale_model_name: "upscale_models",
  photomaker_model_name: "photomaker",
};

/** Loaders whose input names say less than their node type does. */
const FOLDER_BY_NODE: Record<string, Record<string, string>> = {
  CLIPVisionLoader: { clip_name: "clip_vision" },
  UpscaleModelLoader: { model_name: "upscale_models" },
  DiffusersLoader: { model_path: "diffusers" },
};

const MODEL_SUFFIX = /\.(safetensors|sft|ckpt|pt|pth|bin|gguf)$/i;

export interface MissingModel {
  node: LGraphNode;
  input: string;
  file: string;
  /** The folder under `models/`, when the input says which one. */
  folder?: string;
}

/** The `models/` folder a loader's input reads from, when its name says so. */
export function modelFolder(node: LGraphNode, input: string): string | undefined {
  const type = nodeDef(node)?.name ?? "";
  return FOLDER_BY_NODE[type]?.[input] ?? FOLDER_BY_INPUT[input];
}

/** Combo widgets naming a model file the server's list lacks (linked inputs get their value elsewhere). */
export function missingModels(graph: LGraph): MissingModel[] {
  const missing: MissingModel[] = [];
  for (const node of graph.nodes) {
    if (!nodeDef(node) || !isExecutable(node)) continue;
    for (const widget of node.widgets ?? []) {
      if (widget.type !== "combo" || node.getSlotFromWidget(widget)?.link != null) continue;
      const values = ((widget.options.values ?? []) as unknown[]).map(String);
      const file = String(widget.value ?? "");
      const folder = modelFolder(node, widget.name);
      if (!file || values.includes(file) || !(folder || MODEL_SUFFIX.test(file))) continue;
      missing.push({ node, input: widget.name, file, folder });
    }
  }
  return missing;
}

/** The message for one missing file: what, where it is used, and where to put it. */
export function describeMissing(model: MissingModel): string {
  const where = model.folder ? `models/${model.folder}` : `the models/ folder ${model.node.title} reads from`;
  return `Missing model file ${model.file} (${model.node.title} › ${model.input}): put it in ${where}`;
}

/**
 * One report for everything a workflow needs that is not installed: each missing node type and each
 * missing model file once, with its folder. Empty when nothing is missing.
 */
export function missingReport(graph: LGraph, types: string[], models: MissingModel[]): string[] {
  const subgraphs = types.map((type) => subgraphName(graph, type)).filter((name) => name !== undefined);
  const others = types.filter((type) => subgraphName(graph, type) === undefined);
  const lines = others.length ? [`Missing node types (shown in red): ${others.join(", ")}`] : [];
  if (subgraphs.length) {
    lines.push(`Subgraphs, which this canvas cannot open or run yet (kept as they are): ${subgraphs.join(", ")}`);
  }
  const seen = new Set<string>();
  for (const model of models) {
    const key = `${model.folder}/${model.file}`;
    if (seen.has(key)) continue;
    seen.add(key);
    lines.push(describeMissing(model));
  }
  return lines;
}
