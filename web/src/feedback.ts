// What the canvas shows about a run: the running node, progress, previews, images, errors on nodes.
import { LGraphNode, LiteGraph, type LGraphCanvas } from "@comfyorg/litegraph";

export interface NodeError {
  message: string;
  inputs: Map<string, string>;
}

const RUNNING = "#3c3";
const ERROR = "#f44";

/** Per-node display state, keyed by node id (as the server names them: strings). */
export class Feedback {
  running: string | null = null;
  progress = new Map<string, number>();
  images = new Map<string, HTMLImageElement[]>();
  errors = new Map<string, NodeError>();

  constructor(private canvas: LGraphCanvas) {
    const feedback = this;
    LGraphNode.prototype.onDrawBackground = function (ctx) {
      feedback.#drawImages(this, ctx);
    };
    canvas.onDrawForeground = (ctx) => this.#drawOverlays(ctx);
  }

  redraw(): void {
    this.canvas.setDirty(true, true);
  }

  clearErrors(): void {
    this.errors.clear();
    this.redraw();
  }

  /** Shows images on a node; the first time, makes the node tall enough to show them. */
  setImages(nodeId: string, urls: string[]): void {
    const images = urls.map((url) => {
      const image = new Image();
      image.onload = () => this.redraw();
      image.src = url;
      return image;
    });
    const previous = this.images.get(nodeId);
    this.images.set(nodeId, images);
    const node = this.canvas.graph?.getNodeById(nodeId);
    if (node && !previous && node.size[1] - imageTop(node) < 160) node.setSize([Math.max(node.size[0], 256), imageTop(node) + 256]);
    this.redraw();
  }

  #drawImages(node: LGraphNode, ctx: CanvasRenderingContext2D): void {
    const images = this.images.get(String(node.id))?.filter((image) => image.complete && image.naturalWidth > 0);
    if (!images?.length || node.flags.collapsed) return;
    const top = imageTop(node);
    const [width, height] = [node.size[0], node.size[1] - top];
    if (height < 16) return;
    const columns = Math.ceil(Math.sqrt(images.length));
    const rows = Math.ceil(images.length / columns);
    const cellW = width / columns;
    const cellH = height / rows;
    images.forEach((image, i) => {
      const scale = Math.min(cellW / image.naturalWidth, cellH / image.naturalHeight);
      const w = image.naturalWidth * scale;
      const h = image.naturalHeight * scale;
      const x = (i % columns) * cellW + (cellW - w) / 2;
      const y = top + Math.floor(i / columns) * cellH + (cellH - h) / 2;
      ctx.imageSmoothingEnabled = scale < 1;
      ctx.drawImage(image, x, y, w, h);
    });
    ctx.imageSmoothingEnabled = true;
  }

  #drawOverlays(ctx: CanvasRenderingContext2D): void {
    const graph = this.canvas.graph;
    if (!graph) return;
    const title = LiteGraph.NODE_TITLE_HEIGHT;
    const running = this.running != null ? graph.getNodeById(this.running) : null;
    if (running) {
      outline(ctx, running, RUNNING, 3);
      const value = this.progress.get(String(running.id));
      if (value !== undefined) {
        const [x, y] = running.pos;
        ctx.fillStyle = "rgba(0,0,0,0.5)";
        ctx.fillRect(x, y - title - 8, running.size[0], 5);
        ctx.fillStyle = RUNNING;
        ctx.fillRect(x, y - title - 8, running.size[0] * value, 5);
      }
    }
    for (const [id, error] of this.errors) {
      const node = graph.getNodeById(id);
      if (!node) continue;
      outline(ctx, node, ERROR, 3);
      this.#drawError(ctx, node, error);
    }
  }

  #drawError(ctx: CanvasRenderingContext2D, node: LGraphNode, error: NodeError): void {
    const [x, y] = node.pos;
    for (const name of error.inputs.keys()) {
      const row = inputRow(node, name);
      if (!row) continue;
      ctx.strokeStyle = ERROR;
      ctx.lineWidth = 2;
      ctx.strokeRect(x + 4, row.top, node.size[0] - 8, row.height);
    }
    const lines = [error.message, ...[...error.inputs].map(([name, message]) => `${name}: ${message}`)].filter(Boolean);
    ctx.font = "12px sans-serif";
    const width = Math.max(node.size[0], ...lines.map((line) => ctx.measureText(line).width + 16));
    const top = y + node.size[1] + 8;
    ctx.fillStyle = "rgba(90,10,10,0.92)";
    ctx.beginPath();
    ctx.roundRect(x, top, Math.min(width, 600), lines.length * 16 + 10, 6);
    ctx.fill();
    ctx.fillStyle = "#fdd";
    ctx.textAlign = "left";
    lines.forEach((line, i) => ctx.fillText(line, x + 8, top + 18 + i * 16, 584));
  }
}

function outline(ctx: CanvasRenderingContext2D, node: LGraphNode, color: string, width: number): void {
  const title = LiteGraph.NODE_TITLE_HEIGHT;
  const [x, y] = node.pos;
  const height = node.flags.collapsed ? 0 : node.size[1];
  const nodeWidth = node.flags.collapsed ? (node._collapsed_width ?? LiteGraph.NODE_COLLAPSED_WIDTH) : node.size[0];
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.beginPath();
  ctx.roundRect(x - 4, y - title - 4, nodeWidth + 8, height + title + 8, 10);
  ctx.stroke();
}

/**
 * The row an input is drawn on, in graph coordinates: its widget when it has one, else its socket,
 * placed where litegraph draws it (widget sockets sit beside their widgets, not in the socket rows).
 */
function inputRow(node: LGraphNode, name: string): { top: number; height: number } | null {
  const slot = node.inputs.findIndex((input) => input.name === name || input.widget?.name === name);
  const linked = slot >= 0 && node.inputs[slot].link != null;
  const widget = node.widgets?.find((w) => w.name === name);
  if (widget?.y !== undefined && !linked) return { top: node.pos[1] + widget.y, height: LiteGraph.NODE_WIDGET_HEIGHT };
  if (slot < 0) return null;
  const height = LiteGraph.NODE_SLOT_HEIGHT;
  return { top: node.getInputPos(slot)[1] - height / 2, height };
}

/** Where a node's image area starts: below its sockets and widgets. */
function imageTop(node: LGraphNode): number {
  const slots = Math.max(node.inputs.filter((input) => !input.widget).length, node.outputs.length);
  let top = slots * LiteGraph.NODE_SLOT_HEIGHT + 8;
  for (const widget of node.widgets ?? []) {
    top = Math.max(top, (widget.y ?? 0) + (widget.computedHeight ?? LiteGraph.NODE_WIDGET_HEIGHT + 4));
  }
  return top + 4;
}
