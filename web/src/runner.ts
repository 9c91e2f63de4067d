// Queueing prompts and following them: websocket events drive the canvas feedback and the overall bar.
import type { LGraph } from "@comfyorg/litegraph";
import { api, ApiError, type ImageRef, type Socket, type SocketEvent } from "./api";
import type { Feedback, NodeError } from "./feedback";
import { missingModels, missingReport, modelFolder } from "./models";
import { graphToPrompt, missingNodeTypes } from "./prompt";
import { shippedSizeHint } from "./shipped";
import { nodeDef } from "./nodeTypes";
import { duration } from "./summary";
import { setStatus, toast } from "./ui";
import { applyControls } from "./widgets";

interface NodeErrorItem {
  type?: string;
  message?: string;
  details?: string;
  extra_info?: { input_name?: string; received_value?: unknown };
}

interface NodeErrorBody {
  errors?: NodeErrorItem[];
  class_type?: string;
}

export class Runner extends EventTarget {
  /** Node count of each prompt this page queued, for the overall progress bar. */
  #sizes = new Map<string, number>();
  #done = new Set<string>();
  #current: string | null = null;
  #previewUrl: string | null = null;
  #startedAt = 0;

  constructor(
    private graph: () => LGraph,
    private feedback: Feedback,
    private overall: HTMLElement,
    socket: Socket,
  ) {
    super();
    socket.addEventListener("message", (event) => this.#onMessage((event as CustomEvent<SocketEvent>).detail));
    socket.addEventListener("preview", (event) => this.#onPreview((event as CustomEvent<Blob>).detail));
  }

  /** Converts the graph and queues it `count` times; seeds move on after each, as their controls say. */
  async queue(count: number): Promise<void> {
    const graph = this.graph();
    this.feedback.clearErrors();
    if (!this.#checkInstalled(graph)) return;
    const hint = shippedSizeHint(graph);
    if (hint) toast(hint);
    for (let i = 0; i < count; i++) {
      const prompt = graphToPrompt(graph);
      const workflow = graph.serialize();
      try {
        const { prompt_id, number } = await api.queuePrompt(prompt, workflow);
        this.#sizes.set(prompt_id, Object.keys(prompt).length);
        if (!this.#current) setStatus(`Queued #${number}`);
      } catch (error) {
        this.#showSubmitError(error);
        break;
      } finally {
        this.dispatchEvent(new Event("queued"));
      }
      for (const node of graph.nodes) applyControls(node);
      graph.setDirtyCanvas(true, true);
    }
  }

  /** Refuses to queue, naming every missing node type and model file (with its folder) at once. */
  #checkInstalled(graph: LGraph): boolean {
    const models = missingModels(graph);
    const report = missingReport(graph, missingNodeTypes(graph), models);
    if (!report.length) return true;
    for (const model of models) {
      const id = String(model.node.id);
      const found = this.feedback.errors.get(id) ?? { message: "", inputs: new Map<string, string>() };
      found.inputs.set(model.input, `${model.file} is not in ${model.folder ? `models/${model.folder}` : "the server's list"}`);
      this.feedback.errors.set(id, found);
    }
    this.feedback.redraw();
    toast(["Cannot queue:", ...report].join("\n"), "error");
    return false;
  }

  #showSubmitError(error: unknown): void {
    if (!(error instanceof ApiError)) {
      toast(`Queueing failed: ${error instanceof Error ? error.message : error}`, "error");
      return;
    }
    const nodeErrors = (error.body.node_errors ?? {}) as Record<string, NodeErrorBody>;
    const lines: string[] = [];
    for (const [id, body] of Object.entries(nodeErrors)) {
      const found: NodeError = { message: "", inputs: new Map() };
      for (const item of body.errors ?? []) {
        const text = this.#errorText(id, item);
        const input = item.extra_info?.input_name;
        if (input) found.inputs.set(input, text);
        else found.message = text;
        const title = this.graph().getNodeById(id)?.title ?? body.class_type ?? id;
        lines.push(`${title}${input ? ` › ${input}` : ""}: ${text}`);
      }
      this.feedback.errors.set(id, found);
    }
    this.feedback.redraw();
    // With node errors, the top-level details only repeat the first of them.
    const summary = lines.length ? ((error.body.error as { message?: string } | undefined)?.message ?? error.message) : error.message;
    toast([summary, ...lines].join("\n"), "error");
  }

  /** A server error in words; a model file the server lacks is named with the folder it belongs in. */
  #errorText(id: string, item: NodeErrorItem): string {
    const input = item.extra_info?.input_name;
    const node = this.graph().getNodeById(id);
    const folder = node && input ? modelFolder(node, input) : undefined;
    if (item.type === "value_not_in_list" && folder) {
      return `${String(item.extra_info?.received_value ?? "the file")} is not in models/${folder}: put it there`;
    }
    return [item.message, item.details].filter(Boolean).join(": ");
  }

  #onMessage({ type, data }: SocketEvent): void {
    const promptId = data.prompt_id as string | undefined;
    switch (type) {
      case "status":
        this.dispatchEvent(new CustomEvent("status", { detail: data.status }));
        break;
      case "execution_start":
        this.#current = promptId ?? null;
        this.#startedAt = performance.now();
        setStatus("Starting…");
        this.#done.clear();
        this.feedback.clearErrors();
        this.#setOverall(0);
        break;
      case "execution_cached":
        for (const id of (data.nodes as string[]) ?? []) this.#done.add(String(id));
        this.#setOverall();
        break;
      case "executing": {
        const node = data.node == null ? null : String(data.node);
        if (this.feedback.running) this.#done.add(this.feedback.running);
        this.feedback.running = node;
        if (node !== null) setStatus(this.#describeRunning(node));
        this.#setOverall();
        this.feedback.redraw();
        break;
      }
      case "progress":
        this.feedback.progress.set(String(data.node), Number(data.value) / Math.max(1, Number(data.max)));
        setStatus(`${this.#title(String(data.node))}: step ${data.value} of ${data.max}`);
        this.#setOverall();
        this.feedback.redraw();
        break;
      case "executed": {
        const images = ((data.output as { images?: ImageRef[] } | undefined)?.images ?? []).map((image) => api.viewUrl(image));
        const node = String(data.display_node ?? data.node);
        if (images.length) this.feedback.setImages(node, images);
        this.#done.add(node);
        this.dispatchEvent(new Event("executed"));
        break;
      }
      case "execution_error": {
        const id = String(data.node_id);
        const message = `${data.exception_type ?? "Error"}: ${data.exception_message ?? ""}`;
        this.feedback.errors.set(id, { message, inputs: new Map() });
        toast(`${data.node_type ?? "Node"} ${id} failed — ${message}`, "error");
        this.#finish();
        setStatus(`Failed in ${this.#title(id)} after ${this.#elapsed()}`, 8000);
        break;
      }
      case "execution_interrupted":
        toast("Interrupted");
        this.#finish();
        setStatus(null);
        break;
      case "execution_success":
        this.#finish();
        setStatus(`Finished in ${this.#elapsed()}`, 5000);
        break;
    }
  }

  #title(id: string): string {
    return this.graph().getNodeById(id)?.title ?? `node ${id}`;
  }

  #elapsed(): string {
    return duration(performance.now() - this.#startedAt);
  }

  /** Loaders say they are loading: the first prompt spends most of its time reading the model. */
  #describeRunning(id: string): string {
    const node = this.graph().getNodeById(id);
    const def = node && nodeDef(node);
    if (!node || !def) return `Running ${this.#title(id)}…`;
    if (!def.category.startsWith("loaders") && !def.name.endsWith("Loader")) return `Running ${node.title}…`;
    const file = node.widgets?.find((w) => w.type === "combo" && w.name.endsWith("_name"))?.value;
    return `Loading the model${file ? ` ${file}` : ""} (${node.title}): the first run reads it from disk…`;
  }

  #finish(): void {
    this.feedback.running = null;
    this.feedback.progress.clear();
    this.#current = null;
    this.#setOverall(null);
    this.feedback.redraw();
    this.dispatchEvent(new Event("finished"));
  }

  #onPreview(blob: Blob): void {
    const node = this.feedback.running;
    if (!node) return;
    if (this.#previewUrl) URL.revokeObjectURL(this.#previewUrl);
    this.#previewUrl = URL.createObjectURL(blob);
    this.feedback.setImages(node, [this.#previewUrl]);
  }

  /** The bar under the toolbar: nodes done (plus the running node's share) over the prompt's size. */
  #setOverall(value?: number | null): void {
    const bar = this.overall.firstElementChild as HTMLElement;
    if (value === null) {
      this.overall.classList.remove("active");
      return;
    }
    const size = (this.#current && this.#sizes.get(this.#current)) || 0;
    if (value === undefined) {
      const running = this.feedback.running;
      const partial = running ? (this.feedback.progress.get(running) ?? 0) : 0;
      value = size ? Math.min(1, (this.#done.size + partial) / size) : partial;
    }
    this.overall.classList.add("active");
    bar.style.width = `${(value * 100).toFixed(1)}%`;
  }
}
