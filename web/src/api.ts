// HTTP and websocket client for ComfyUI's API as Loom serves it.

export type InputSpec = [string | unknown[], Record<string, unknown>?];

export interface NodeDef {
  name: string;
  display_name?: string;
  description?: string;
  category: string;
  input: { required?: Record<string, InputSpec>; optional?: Record<string, InputSpec>; hidden?: Record<string, unknown> };
  input_order?: Record<string, string[]>;
  output: string[];
  output_is_list?: boolean[];
  output_name?: string[];
  output_node?: boolean;
  deprecated?: boolean;
  experimental?: boolean;
  dev_only?: boolean;
}

export type ObjectInfo = Record<string, NodeDef>;

export interface ImageRef {
  filename: string;
  subfolder?: string;
  type?: string;
}

export interface QueueItem {
  number: number;
  promptId: string;
  prompt: Record<string, unknown>;
  workflow?: unknown;
  /** When it was queued (ms since the epoch), where the server says. */
  created?: number;
}

export interface HistoryEntry {
  promptId: string;
  number?: number;
  prompt: Record<string, unknown>;
  images: ImageRef[];
  workflow?: unknown;
  status?: string;
  /** When it started and ended running (ms since the epoch), from its status messages. */
  started?: number;
  ended?: number;
}

// Beyond loopback the server wants a token; the page takes it once from ?token= and keeps it for the tab.
const token = new URLSearchParams(location.search).get("token") ?? sessionStorage.getItem("loom.token");
if (token) sessionStorage.setItem("loom.token", token);

function withToken(path: string): string {
  if (!token) return path;
  return `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** The browser's own "Failed to fetch" says nothing; this says which server did not answer. */
export class ServerUnreachable extends Error {
  constructor() {
    super(`the Loom server is not reachable at ${location.origin} (is it running?)`);
  }
}

async function request(path: string, init: RequestInit = {}): Promise<unknown> {
  let response: Response;
  try {
    response = await fetch(path, { ...init, headers: headers((init.headers as Record<string, string>) ?? {}) });
  } catch (error) {
    // fetch rejects (with a TypeError) only when no HTTP answer came back at all.
    if (error instanceof TypeError) throw new ServerUnreachable();
    throw error;
  }
  const text = await response.text();
  let body: unknown = text;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    // Not JSON: keep the text for the message.
  }
  if (!response.ok) {
    const record = (typeof body === "object" && body !== null ? body : { error: String(body) }) as Record<string, unknown>;
    throw new ApiError(errorMessage(record) ?? `${response.status} ${response.statusText}`, response.status, record);
  }
  return body;
}

function errorMessage(body: Record<string, unknown>): string | undefined {
  const error = body.error;
  if (typeof error === "string") return error;
  if (error && typeof error === "object") {
    const { message, details } = error as { message?: string; details?: string };
    return [message, details].filter(Boolean).join(": ");
  }
  return undefined;
}

function post(path: string, body: unknown): Promise<unknown> {
  return request(path, { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
}

export function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export const clientId = sessionStorage.getItem("loom.clientId") ?? randomId();
sessionStorage.setItem("loom.clientId", clientId);

export const api = {
  objectInfo: () => request("/object_info") as Promise<ObjectInfo>,
  extensions: () => request("/extensions") as Promise<string[]>,

  // The canvas shows latent previews while sampling, so it asks for them: the server sends none
  // unless the prompt or --preview-method names a method (as ComfyUI does).
  queuePrompt: (prompt: Record<string, unknown>, workflow: unknown) =>
    post("/prompt", {
      prompt,
      client_id: clientId,
      extra_data: { extra_pnginfo: { workflow }, preview_method: "auto" },
    }) as Promise<{
      prompt_id: string;
      number: number;
    }>,

  async queue(): Promise<{ running: QueueItem[]; pending: QueueItem[] }> {
    const body = (await request("/queue")) as { queue_running?: unknown[][]; queue_pending?: unknown[][] };
    const item = (row: unknown[]): QueueItem => {
      const extra = row[3] as { extra_pnginfo?: { workflow?: unknown }; create_time?: unknown } | undefined;
      return {
        number: row[0] as number,
        promptId: row[1] as string,
        prompt: row[2] as Record<string, unknown>,
        workflow: extra?.extra_pnginfo?.workflow,
        created: typeof extra?.create_time === "number" ? extra.create_time : undefined,
      };
    };
    const byNumber = (a: QueueItem, b: QueueItem) => a.number - b.number;
    return {
      running: (body.queue_running ?? []).map(item),
      pending: (body.queue_pending ?? []).map(item).sort(byNumber),
    };
  },

  deleteFromQueue: (ids: string[]) => post("/queue", { delete: ids }),
  clearQueue: () => post("/queue", { clear: true }),
  interrupt: () => post("/interrupt", {}),

  async history(max = 32): Promise<HistoryEntry[]> {
    const body = (await request(`/history?max_items=${max}`)) as Record<string, Record<string, unknown>>;
    return Object.entries(body)
      .map(([promptId, entry]) => {
        const outputs = (entry.outputs ?? {}) as Record<string, { images?: ImageRef[] }>;
        const images = Object.values(outputs).flatMap((o) => o.images ?? []);
        const row = (entry.prompt as unknown[] | undefined) ?? [];
        const extra = row[3] as { extra_pnginfo?: { workflow?: unknown } } | undefined;
        const status = entry.status as { status_str?: string; messages?: [string, { timestamp?: number }][] } | undefined;
        const times = (status?.messages ?? []).map(([, data]) => data?.timestamp).filter((t): t is number => typeof t === "number");
        return {
          promptId,
          number: typeof row[0] === "number" ? row[0] : undefined,
          prompt: (row[2] ?? {}) as Record<string, unknown>,
          images,
          workflow: extra?.extra_pnginfo?.workflow,
          status: status?.status_str,
          started: times.length ? Math.min(...times) : undefined,
          ended: times.length ? Math.max(...times) : undefined,
        };
      })
      .reverse();
  },

  async uploadImage(file: File): Promise<ImageRef> {
    const form = new FormData();
    form.append("image", file);
    return (await request("/upload/image", { method: "POST", body: form })) as ImageRef;
  },

  viewUrl(image: ImageRef, preview = false): string {
    const query = new URLSearchParams({ filename: image.filename, subfolder: image.subfolder ?? "", type: image.type ?? "output" });
    if (preview) query.set("preview", "webp;80");
    return withToken(`/view?${query}`);
  },
};

export type SocketEvent = { type: string; data: Record<string, unknown> };

// The websocket: JSON messages become `message` events; binary preview frames become `preview` events
// carrying a Blob. Reconnects with a growing delay and says so through `connection` events.
export class Socket extends EventTarget {
  #delay = 500;

  connect(): void {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(withToken(`${scheme}://${location.host}/ws?clientId=${clientId}`));
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      this.#delay = 500;
      this.dispatchEvent(new CustomEvent("connection", { detail: true }));
    };
    ws.onclose = () => {
      this.dispatchEvent(new CustomEvent("connection", { detail: false }));
      setTimeout(() => this.connect(), this.#delay);
      this.#delay = Math.min(this.#delay * 2, 8000);
    };
    ws.onmessage = (event) => {
      if (event.data instanceof ArrayBuffer) this.#binary(event.data);
      else this.dispatchEvent(new CustomEvent<SocketEvent>("message", { detail: JSON.parse(event.data) }));
    };
  }

  #binary(buffer: ArrayBuffer): void {
    const view = new DataView(buffer);
    if (buffer.byteLength < 8 || view.getUint32(0) !== 1) return;
    const mime = view.getUint32(4) === 2 ? "image/png" : "image/jpeg";
    this.dispatchEvent(new CustomEvent("preview", { detail: new Blob([buffer.slice(8)], { type: mime }) }));
  }
}
