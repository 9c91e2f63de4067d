// What the canvas tells a user about Loom's shipped model: it is small, 64×64 and knows one grammar
// (docs/default-model.md), so a graph made for real checkpoints gives it a grid of tiny shapes.
import type { LGraph, LGraphNode } from "@comfyorg/litegraph";
import { isExecutable } from "./prompt";

export const SHIPPED_CHECKPOINT = /(^|\/)loom_default[^/]*\.safetensors$/;
export const SHIPPED_SIZE = 64;
export const SHIPPED_GRAMMAR =
  "a [small|large] [red|green|blue|yellow|purple|orange] <circle|square|triangle> " +
  "[on the left|on the right|at the top|at the bottom|in the center]";

/** The note the default graph carries beside the loader when it uses the shipped model. */
export const SHIPPED_NOTE = [
  "Loom's shipped model (loom_default) is small: it draws flat shapes on white at 64×64 from prompts of one grammar:",
  "",
  SHIPPED_GRAMMAR,
  "",
  "Keep Empty Latent Image at 64×64: at 512×512 it draws a grid of tiny shapes.",
  "Real Stable Diffusion checkpoints go in models/checkpoints (docs/default-model.md).",
].join("\n");

function widgetValue(node: LGraphNode, name: string): unknown {
  return node.widgets?.find((w) => w.name === name)?.value;
}

/** A hint when a graph samples the shipped model at a size it was not trained for; else null. */
export function shippedSizeHint(graph: LGraph): string | null {
  const nodes = graph.nodes.filter(isExecutable);
  const shipped = nodes.some((node) => SHIPPED_CHECKPOINT.test(String(widgetValue(node, "ckpt_name") ?? "")));
  if (!shipped) return null;
  const latent = nodes.find((node) => {
    if (node.type !== "EmptyLatentImage") return false;
    return ["width", "height"].some((name) => Number(widgetValue(node, name)) > SHIPPED_SIZE);
  });
  if (!latent) return null;
  const size = `${widgetValue(latent, "width")}×${widgetValue(latent, "height")}`;
  return (
    `loom_default draws ${SHIPPED_SIZE}×${SHIPPED_SIZE} shapes; at ${size} it draws a grid of tiny shapes. ` +
    `Set ${latent.title} to ${SHIPPED_SIZE}×${SHIPPED_SIZE}, or use a real checkpoint from models/checkpoints.`
  );
}
