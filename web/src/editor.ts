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
