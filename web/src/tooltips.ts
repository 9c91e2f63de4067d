// Hover help, as ComfyUI's front end gives it: a node's description over its title, an input's
// tooltip over its widget or socket. This is where a user looks for what a node is for.
import type { LGraphCanvas, LGraphNode } from "@comfyorg/litegraph";
import { nodeDef, orderedInputs } from "./nodeTypes";

const DELAY_MS = 400;

export function wireTooltips(canvas: LGraphCanvas): void {
  const tip = document.createElement("div");
  tip.className = "tooltip panel";
  tip.hidden = true;
  document.body.append(tip);
  let timer: number | undefined;
  const hide = () => {
    clearTimeout(timer);
    tip.hidden = true;
  };
  canvas.canvas.addEventListener("pointermove", (event) => {
    hide();
    if (event.buttons) return;
    timer = window.setTimeout(() => {
      const text = helpAt(canvas, event);
      if (!text) return;
      // Descriptions come from docstrings: lines wrapped in the source, paragraphs kept.
      tip.textContent = text.replace(/(?<!\n)\n(?!\n)/g, " ");
      tip.style.left = `${Math.min(event.clientX + 14, innerWidth - 380)}px`;
      tip.style.top = `${event.clientY + 18}px`;
      tip.hidden = false;
    }, DELAY_MS);
  });
  for (const name of ["pointerdown", "pointerleave", "wheel"]) canvas.canvas.addEventListener(name, hide);
}

function helpAt(canvas: LGraphCanvas, event: PointerEvent): string | undefined {
  const [x, y] = canvas.convertEventToCanvasOffset(event);
  const node = canvas.graph?.getNodeOnPos(x, y);
  if (!node) return undefined;
  if (y < node.pos[1]) return nodeDef(node)?.description || undefined;
  const widget = node.getWidgetOnPos(x, y);
  if (widget) return widget.tooltip ?? inputTooltip(node, widget.name);
  const input = node.getInputOnPos([x, y]);
  return input ? inputTooltip(node, input.widget?.name ?? input.name) : undefined;
}

function inputTooltip(node: LGraphNode, name: string): string | undefined {
  const def = nodeDef(node);
  const spec = def && orderedInputs(def).find(([input]) => input === name)?.[1];
  const tooltip = (spec?.[1] as { tooltip?: unknown } | undefined)?.tooltip;
  return typeof tooltip === "string" ? tooltip : undefined;
}
