// Page chrome around the canvas: toasts, the queue panel, the history gallery and its lightbox.
import { api, type HistoryEntry } from "./api";

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
    const row = (label: string, actions: HTMLButtonElement[]) => {
      const item = document.createElement("li");
      item.append(label, ...actions);
      return item;
    };
    $("running-list").replaceChildren(
      ...queue.running.map((item) =>
        row(`#${item.number} · ${Object.keys(item.prompt).length} nodes `, [
          button("Stop", "Interrupt this prompt", () => void api.interrupt().then(() => this.refresh())),
        ]),
      ),
    );
    $("pending-list").replaceChildren(
      ...queue.pending.map((item) =>
        row(`#${item.number} · ${Object.keys(item.prompt).length} nodes `, [
          button("Cancel", "Remove it from the queue", () => void api.deleteFromQueue([item.promptId]).then(() => this.refresh())),
        ]),
      ),
    );
    this.#renderGallery(history);
  }

  #renderGallery(history: HistoryEntry[]): void {
    const thumbs = history.flatMap((entry) =>
      entry.images.map((image) => {
        const thumb = document.createElement("img");
        thumb.src = api.viewUrl(image);
        thumb.loading = "lazy";
        thumb.title = image.filename;
        thumb.addEventListener("click", () => this.#openLightbox(api.viewUrl(image), entry));
        return thumb;
      }),
    );
    $("gallery").replaceChildren(...thumbs);
  }

  #openLightbox(url: string, entry: HistoryEntry): void {
    const box = document.createElement("div");
    box.className = "lightbox";
    const image = document.createElement("img");
    image.src = url;
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
    box.append(image, actions);
    box.addEventListener("click", (event) => event.target === box && close());
    box.tabIndex = -1;
    box.addEventListener("keydown", (event) => event.key === "Escape" && close());
    document.body.append(box);
    box.focus();
  }
}
