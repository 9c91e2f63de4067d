// Page chrome around the canvas: toasts, the queue panel, the history gallery and its lightbox.
import { api, type HistoryEntry, type ImageRef } from "./api";
import { clockTime, duration, summarize, summaryLine } from "./summary";

export function $(id: string): HTMLElement {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from index.html`);
  return element;
}

export function toast(message: string, kind: "info" | "error" = "info"): void {
  const item = document.createElement("div");
  item.className = `toast ${kind}`;
  item.textContent = message;
  item.addEventListener("click", () => item.remove());
  $("toasts").append(item);
  setTimeout(() => item.remove(), kind === "error" ? 12000 : 4000);
}

let statusTimer: number | undefined;

/** The line under the toolbar saying what the server is doing; `hideAfterMs` clears it later. */
export function setStatus(text: string | null, hideAfterMs?: number): void {
  const line = $("run-status");
  clearTimeout(statusTimer);
  line.textContent = text ?? "";
  line.hidden = !text;
  if (text && hideAfterMs) statusTimer = window.setTimeout(() => setStatus(null), hideAfterMs);
}

function button(label: string, title: string, onClick: () => void): HTMLButtonElement {
  const element = document.createElement("button");
  element.className = "small";
  element.textContent = label;
  element.title = title;
  element.addEventListener("click", onClick);
  return element;
}

export class QueuePanel {
  constructor(private loadWorkflow: (workflow: unknown) => void) {
    $("queue-panel-button").addEventListener("click", () => {
      $("side-panel").hidden = !$("side-panel").hidden;
      if (!$("side-panel").hidden) void this.refresh();
    });
    $("clear-queue").addEventListener("click", async () => {
      await api.clearQueue();
      await this.refresh();
    });
  }

  setQueueSize(size: number): void {
    $("queue-size").textContent = String(size);
  }

  async refresh(): Promise<void> {
    const [queue, history] = await Promise.all([api.queue(), api.history()]);
    this.setQueueSize(queue.running.length + queue.pending.length);
    $("running-list").replaceChildren(
      ...queue.running.map((item) =>
        row(`#${item.number} · running${since(item.created)}`, item.prompt, [
          button("Stop", "Interrupt this prompt", () => void api.interrupt().then(() => this.refresh())),
        ]),
      ),
    );
    $("pending-list").replaceChildren(
      ...queue.pending.map((item) =>
        row(`#${item.number} · queued${since(item.created)}`, item.prompt, [
          button("Cancel", "Remove it from the queue", () => void api.deleteFromQueue([item.promptId]).then(() => this.refresh())),
        ]),
      ),
    );
    this.#renderHistory(history);
  }

  #renderHistory(history: HistoryEntry[]): void {
    const entries = history.map((entry) => {
      const item = document.createElement("div");
      item.className = `history-entry ${entry.status ?? ""}`;
      const thumbs = document.createElement("div");
      thumbs.className = "thumbs";
      for (const image of entry.images) {
        const thumb = document.createElement("img");
        thumb.src = api.viewUrl(image);
        thumb.loading = "lazy";
        thumb.title = image.filename;
        thumb.addEventListener("click", () => this.#openLightbox(image, entry));
        thumbs.append(thumb);
      }
      item.append(caption("head", historyHead(entry)), caption("summary", summaryLine(entry.prompt)), thumbs);
      return item;
    });
    $("gallery").replaceChildren(...entries);
  }

  #openLightbox(image: ImageRef, entry: HistoryEntry): void {
    const box = document.createElement("div");
    box.className = "lightbox";
    const picture = document.createElement("img");
    picture.src = api.viewUrl(image);
    const { text, seed, size } = summarize(entry.prompt);
    const details = document.createElement("dl");
    const facts: [string, string | undefined][] = [
      ["Prompt", text],
      ["Seed", seed === undefined ? undefined : String(seed)],
      ["Size", size],
      ["File", [image.subfolder, image.filename].filter(Boolean).join("/")],
    ];
    for (const [label, value] of facts) {
      if (value === undefined) continue;
      details.append(caption("", label, "dt"), caption("", value, "dd"));
    }
    const actions = document.createElement("div");
    actions.className = "actions";
    const close = () => box.remove();
    if (entry.workflow) {
      actions.append(
        button("Load workflow", "Replace the canvas with the workflow that made this image", () => {
          this.loadWorkflow(entry.workflow);
          close();
        }),
      );
    }
    actions.append(button("Close", "Close (Esc)", close));
    box.append(picture, details, actions);
    box.addEventListener("click", (event) => event.target === box && close());
    box.tabIndex = -1;
    box.addEventListener("keydown", (event) => event.key === "Escape" && close());
    document.body.append(box);
    box.focus();
  }
}

function caption(className: string, text: string, tag = "div"): HTMLElement {
  const element = document.createElement(tag);
  if (className) element.className = className;
  element.textContent = text;
  return element;
}

/** A queue row: number, state and time, the buttons, then the prompt's text, seed and size. */
function row(head: string, prompt: Record<string, unknown>, actions: HTMLButtonElement[]): HTMLLIElement {
  const item = document.createElement("li");
  const top = caption("head", `${head} `);
  top.append(...actions);
  item.append(top, caption("summary", summaryLine(prompt)));
  return item;
}

function since(created: number | undefined): string {
  return created === undefined ? "" : ` · since ${clockTime(created)}`;
}

function historyHead(entry: HistoryEntry): string {
  const parts = [entry.number === undefined ? undefined : `#${entry.number}`, entry.status ?? "unknown"];
  if (entry.ended !== undefined) parts.push(clockTime(entry.ended));
  if (entry.started !== undefined && entry.ended !== undefined) parts.push(duration(entry.ended - entry.started));
  return parts.filter(Boolean).join(" · ");
}
