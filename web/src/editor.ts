// The canvas itself: LiteGraph set-up, type colours, fit-to-view, groups, modes, and the node search.
import { LGraph, LGraphCanvas, LGraphEventMode, LGraphGroup, LiteGraph, type LGraphNode } from "@comfyorg/litegraph";
import type { ConnectingLink } from "@comfyorg/litegraph";
import { TYPE_COLORS } from "./nodeTypes";
import type { NodeSearch } from "./search";

export function createEditor(element: HTMLCanvasElement): { graph: LGraph; canvas: LGraphCanvas } {
  LiteGraph.release_link_on_empty_shows_menu = false;
  LiteGraph.middle_click_slot_add_default_node = true;
  LiteGraph.alt_drag_do_clone_nodes = true;
  LiteGraph.snaps_for_comfy = true;
  LiteGraph.catch_exceptions = true;
  const graph = new LGraph();
  const canvas = new LGraphCanvas(element, graph);
  canvas.allow_searchbox = false;
  canvas.render_canvas_border = false;
  canvas.show_info = false;
  canvas.default_connection_color_byType = { ...TYPE_COLORS };
  Object.assign(LGraphCanvas.link_type_colors, TYPE_COLORS);
  drawModes(canvas);
  sortMenuCategories();
  withoutSubgraphMenus(canvas);
  // The backing store has the screen's pixel density, so the graph is sharp on high-DPI screens;
  // the context is scaled once per resize (as ComfyUI's front end does) and litegraph works in CSS
  // pixels.
  const resize = () => {
    const ratio = Math.max(devicePixelRatio, 1);
    element.width = Math.round(innerWidth * ratio);
    element.height = Math.round(innerHeight * ratio);
    element.style.width = `${innerWidth}px`;
    element.style.height = `${innerHeight}px`;
    element.getContext("2d")?.scale(ratio, ratio);
    canvas.setDirty(true, true);
  };
  addEventListener("resize", resize);
  resize();
  return { graph, canvas };
}

export function fitView(canvas: LGraphCanvas): void {
  const nodes = canvas.graph?.nodes ?? [];
  if (!nodes.length) return;
  const title = LiteGraph.NODE_TITLE_HEIGHT;
  let [left, top, right, bottom] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const node of nodes) {
    left = Math.min(left, node.pos[0]);
    top = Math.min(top, node.pos[1] - title);
    right = Math.max(right, node.pos[0] + node.size[0]);
    bottom = Math.max(bottom, node.pos[1] + node.size[1]);
  }
  // Leave room for the toolbar; never zoom in past 100 %: small graphs stay at their natural size.
  const [width, height] = [canvas.canvas.clientWidth, canvas.canvas.clientHeight - 60];
  const scale = Math.min(1, (0.92 * width) / (right - left), (0.92 * height) / (bottom - top));
  canvas.ds.scale = scale;
  canvas.ds.offset = [width / 2 / scale - (left + right) / 2, (height / 2 + 60) / scale - (top + bottom) / 2];
  canvas.setDirty(true, true);
}

function selectedNodes(canvas: LGraphCanvas): LGraphNode[] {
  return Object.values(canvas.selected_nodes ?? {});
}

export function groupSelection(canvas: LGraphCanvas): void {
  const nodes = selectedNodes(canvas);
  if (!nodes.length || !canvas.graph) return;
  const group = new LGraphGroup("Group");
  group.resizeTo(nodes, 10);
  canvas.graph.add(group);
  canvas.setDirty(true, true);
}

/** The Add Node menu lists categories alphabetically, ones for testing (`_for_testing`) last. */
function sortMenuCategories(): void {
  const categories = LiteGraph.getNodeTypesCategories.bind(LiteGraph);
  const rank = (category: string) => (category.startsWith("_") ? 1 : 0);
  LiteGraph.getNodeTypesCategories = (filter) =>
    categories(filter).sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/** How muted and bypassed nodes look, as in ComfyUI: muted ones faded, bypassed ones tinted purple. */
const MODE_STYLES: Partial<Record<LGraphEventMode, { alpha: number; bgcolor?: string }>> = {
  [LGraphEventMode.NEVER]: { alpha: 0.35 },
  [LGraphEventMode.BYPASS]: { alpha: 0.6, bgcolor: "#9b1fa8" },
};

function drawModes(canvas: LGraphCanvas): void {
  const drawNode = canvas.drawNode.bind(canvas);
  canvas.drawNode = (node, ctx) => {
    const style = MODE_STYLES[node.mode];
    if (!style) return drawNode(node, ctx);
    const [alpha, bgcolor] = [canvas.editor_alpha, node.bgcolor];
    canvas.editor_alpha = alpha * style.alpha;
    if (style.bgcolor) node.bgcolor = style.bgcolor;
    try {
      drawNode(node, ctx);
    } finally {
      canvas.editor_alpha = alpha;
      node.bgcolor = bgcolor;
    }
  };
}

/**
 * litegraph offers "Convert to Subgraph", but a subgraph needs a node type of its own, a way in and
 * out of it, and flattening when queued, none of which this canvas has yet: the entry would delete
 * the selected nodes. It is left out of both menus until subgraphs work end to end.
 */
function withoutSubgraphMenus(canvas: LGraphCanvas): void {
  type Option = { content?: string } | null;
  const keep = (option: Option) => !option?.content?.startsWith("Convert to Subgraph");
  const nodeMenu = canvas.getNodeMenuOptions.bind(canvas);
  const canvasMenu = canvas.getCanvasMenuOptions.bind(canvas);
  canvas.getNodeMenuOptions = (node) => nodeMenu(node).filter(keep);
  canvas.getCanvasMenuOptions = () => canvasMenu().filter(keep);
}

/** Ctrl+M mutes (never runs), Ctrl+B bypasses (inputs pass through); pressing again restores. */
export function toggleMode(canvas: LGraphCanvas, mode: LGraphEventMode): void {
  for (const node of selectedNodes(canvas)) node.mode = node.mode === mode ? LGraphEventMode.ALWAYS : mode;
  canvas.setDirty(true, true);
}

/** Double-click on empty canvas opens the search there; dropping a link on empty canvas offers nodes that take it. */
export function wireSearch(canvas: LGraphCanvas, search: NodeSearch): void {
  canvas.canvas.addEventListener("litegraph:canvas", (event) => {
    const detail = (event as CustomEvent).detail as {
      subType: string;
      originalEvent: MouseEvent;
      linkReleaseContext?: { links: ConnectingLink[] };
    };
    if (!detail.originalEvent) return;
    const { clientX, clientY } = detail.originalEvent;
    const graphPos = [...canvas.graph_mouse];
    if (detail.subType === "empty-double-click") {
      search.open({ x: clientX, y: clientY }, (type) => addNode(canvas, type, graphPos));
    } else if (detail.subType === "empty-release" && detail.linkReleaseContext?.links.length) {
      const link = detail.linkReleaseContext.links[0];
      const fromOutput = Boolean(link.output);
      const type = String((link.output ?? link.input)?.type ?? "*");
      search.open(
        { x: clientX, y: clientY },
        (nodeType) => {
          const node = addNode(canvas, nodeType, graphPos);
          if (!node) return;
          if (fromOutput) {
            const slot = node.inputs.findIndex((input) => LiteGraph.isValidConnection(type, input.type));
            if (slot >= 0) link.node.connect(link.slot, node, slot);
          } else {
            const slot = node.outputs.findIndex((output) => LiteGraph.isValidConnection(output.type, type));
            if (slot >= 0) node.connect(slot, link.node, link.slot);
          }
        },
        { type, side: fromOutput ? "output" : "input" },
      );
    }
  });
}

export function addNode(canvas: LGraphCanvas, type: string, pos: ArrayLike<number>): LGraphNode | null {
  const node = LiteGraph.createNode(type);
  if (!node || !canvas.graph) return null;
  node.pos = [pos[0], pos[1]];
  canvas.graph.add(node);
  canvas.selectNode(node);
  canvas.setDirty(true, true);
  return node;
}
