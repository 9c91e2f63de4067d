// Loom's canvas: loads /object_info, restores the last workflow (or the default graph), wires the page.
import "@comfyorg/litegraph/style.css";
import "./style.css";
import { LGraphEventMode, type LGraph, type LGraphCanvas, type LGraphNode } from "@comfyorg/litegraph";
import { api, Socket, type ObjectInfo } from "./api";
import { addNode, createEditor, fitView, groupSelection, toggleMode, wireSearch } from "./editor";
import { Feedback } from "./feedback";
import { registerFrontendNodes } from "./frontendNodes";
import { ChangeTracker, savedWorkflow } from "./history";
import { missingModels, missingReport } from "./models";
import { markMissingNodes, registerNodeDefs } from "./nodeTypes";
import { graphToPrompt, type ApiPrompt } from "./prompt";
import { Runner } from "./runner";
import { NodeSearch } from "./search";
import { keepSubgraphDefinitions } from "./subgraphs";
import { wireTooltips } from "./tooltips";
import { $, QueuePanel, setStatus, toast } from "./ui";
import { buildDefaultGraph, loadApiWorkflow, parseWorkflow, readWorkflowFile, type Workflow } from "./workflow";

interface Loom {
  graph: LGraph;
  canvas: LGraphCanvas;
  info: ObjectInfo;
  feedback: Feedback;
  load(workflow: unknown): void;
  queue(count?: number): Promise<void>;
  toPrompt(): ApiPrompt;
  add(type: string, pos: [number, number]): LGraphNode | null;
  /** URLs of the custom node packs' front-end scripts that loaded. */
  extensions: string[];
}

declare global {
  interface Window {
    loom?: Loom;
  }
}

async function start(): Promise<void> {
  const info = await api.objectInfo();
  registerFrontendNodes();
  registerNodeDefs(info);
  const { graph, canvas } = createEditor($("graph") as HTMLCanvasElement);
  const feedback = new Feedback(canvas);
  keepSubgraphDefinitions(graph);
  wireTooltips(canvas);
  const viewport = () => ({ scale: canvas.ds.scale, offset: [...canvas.ds.offset] });

  const apply = (workflow: Workflow, keepView = false) => {
    feedback.images.clear();
    feedback.clearErrors();
    if ("api" in workflow) {
      loadApiWorkflow(graph, workflow.api);
      fitView(canvas);
      return;
    }
    graph.configure(workflow.ui);
    const missing = missingReport(graph, markMissingNodes(graph), missingModels(graph));
    if (missing.length) toast(missing.join("\n"), "error");
    const ds = (workflow.ui.extra as { ds?: { scale: number; offset: [number, number] } } | undefined)?.ds;
    if (keepView) return;
    if (ds?.offset && ds.scale) {
      canvas.ds.scale = ds.scale;
      canvas.ds.offset = [ds.offset[0], ds.offset[1]];
    } else {
      fitView(canvas);
    }
  };
  const tracker = new ChangeTracker(graph, (data) => apply(parseWorkflow(data), true), viewport);
  const load = (workflow: Workflow | unknown) => {
    const previous = graph.serialize();
    try {
      apply(typeof workflow === "object" && workflow && ("ui" in workflow || "api" in workflow) ? (workflow as Workflow) : parseWorkflow(workflow));
    } catch (error) {
      toast(`Could not load the workflow: ${error instanceof Error ? error.message : error}`, "error");
      graph.configure(previous);
    }
    tracker.check();
    canvas.setDirty(true, true);
  };
  const loadDefault = () => {
    buildDefaultGraph(graph, info);
    fitView(canvas);
    tracker.check();
  };

  const saved = savedWorkflow();
  if (saved) {
    load(saved);
    if (!graph.nodes.length) loadDefault();
  } else {
    loadDefault();
  }
  tracker.reset();

  const socket = new Socket();
  const runner = new Runner(() => graph, feedback, $("overall-progress"), socket);
  const panel = new QueuePanel((workflow) => load(workflow));
  const refreshPanel = () => !$("side-panel").hidden && void panel.refresh().catch(() => undefined);
  socket.addEventListener("connection", (event) => {
    $("connection").classList.toggle("online", (event as CustomEvent<boolean>).detail);
  });
  runner.addEventListener("status", (event) => {
    const status = (event as CustomEvent).detail as { exec_info?: { queue_remaining?: number } } | undefined;
    panel.setQueueSize(status?.exec_info?.queue_remaining ?? 0);
    refreshPanel();
  });
  for (const name of ["queued", "finished", "executed"]) runner.addEventListener(name, refreshPanel);
  socket.connect();

  const search = new NodeSearch(info);
  wireSearch(canvas, search);
  const queue = (count = Number(($("batch-count") as HTMLInputElement).value) || 1) => runner.queue(count).then(() => tracker.check());
  const save = () => download(JSON.stringify(graph.serialize(), null, 2), "loom-workflow.json");
  const open = () => $("file-input").click();

  $("queue-button").addEventListener("click", () => void queue());
  $("interrupt-button").addEventListener("click", () => void api.interrupt());
  $("save-button").addEventListener("click", save);
  $("open-button").addEventListener("click", open);
  $("fit-button").addEventListener("click", () => fitView(canvas));
  $("default-button").addEventListener("click", loadDefault);
  $("file-input").addEventListener("change", async (event) => {
    const input = event.target as HTMLInputElement;
    if (input.files?.[0]) await loadFile(input.files[0]);
    input.value = "";
  });

  async function loadFile(file: File): Promise<void> {
    try {
      load(await readWorkflowFile(file));
    } catch (error) {
      toast(`Could not open ${file.name}: ${error instanceof Error ? error.message : error}`, "error");
    }
  }
  addEventListener("dragover", (event) => event.preventDefault());
  addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer?.files[0];
    if (file) void loadFile(file);
  });

  addEventListener("keydown", (event) => {
    const target = event.target as HTMLElement;
    if (target.localName === "input" || target.localName === "textarea") return;
    const ctrl = event.ctrlKey || event.metaKey;
    const key = event.key.toLowerCase();
    const actions: Record<string, () => void> = {
      "ctrl+enter": () => void queue(),
      "ctrl+s": save,
      "ctrl+o": open,
      "ctrl+z": () => tracker.undo(),
      "ctrl+y": () => tracker.redo(),
      "ctrl+shift+z": () => tracker.redo(),
      "ctrl+g": () => groupSelection(canvas),
      "ctrl+m": () => toggleMode(canvas, LGraphEventMode.NEVER),
      "ctrl+b": () => toggleMode(canvas, LGraphEventMode.BYPASS),
      ".": () => fitView(canvas),
      "/": () => search.open({ x: innerWidth / 2 - 200, y: 120 }, (type) => addNode(canvas, type, canvas.graph_mouse)),
    };
    const action = actions[`${ctrl ? "ctrl+" : ""}${ctrl && event.shiftKey ? "shift+" : ""}${key}`];
    if (!action) return;
    event.preventDefault();
    action();
    tracker.check();
  });
  for (const name of ["pointerup", "keyup", "change"]) addEventListener(name, () => tracker.check());
  addEventListener("wheel", () => tracker.saveViewport(), { passive: true });

  window.loom = {
    graph,
    canvas,
    info,
    feedback,
    load,
    queue,
    toPrompt: () => graphToPrompt(graph),
    add: (type, pos) => addNode(canvas, type, pos),
    extensions: [],
  };
  window.loom.extensions = await loadExtensions();
  setStatus(null);
  document.body.dataset.ready = "true";
}

/** Custom node packs' front-end scripts (their WEB_DIRECTORY), loaded as modules once `window.loom`
 * exists; one that fails is reported and skipped. */
async function loadExtensions(): Promise<string[]> {
  const urls = await api.extensions().catch(() => [] as string[]);
  const loaded = await Promise.all(
    urls.map(async (url) => {
      try {
        await import(url);
        return url;
      } catch (error) {
        console.warn(`extension ${url} did not load`, error);
        toast(`A node pack's front-end script did not load: ${url}`, "error");
        return undefined;
      }
    }),
  );
  return loaded.filter((url): url is string => url !== undefined);
}

function download(text: string, name: string): void {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

start().catch((error) => {
  console.error(error);
  const message = `Loom could not start: ${error instanceof Error ? error.message : error}`;
  setStatus(message);
  toast(message, "error");
});
