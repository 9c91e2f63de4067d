// One line about a queued prompt, so a user tells prompts apart: its text, seed and size.
type ApiNode = { class_type?: string; inputs?: Record<string, unknown> };

const TEXT_INPUTS = ["text", "text_g", "prompt", "positive"];
const MAX_TEXT = 90;

function isLink(value: unknown): value is [string, number] {
  return Array.isArray(value) && value.length === 2 && typeof value[1] === "number";
}

function textOf(node: ApiNode | undefined): string | undefined {
  for (const name of TEXT_INPUTS) {
    const value = node?.inputs?.[name];
    if (typeof value === "string" && value.trim()) return value.trim();
  }
  return undefined;
}

export interface PromptSummary {
  /** The positive prompt's text: what a sampler's `positive` is encoded from, else the first text. */
  text?: string;
  seed?: number;
  size?: string;
}

export function summarize(prompt: Record<string, unknown>): PromptSummary {
  const nodes = Object.values(prompt) as ApiNode[];
  const summary: PromptSummary = {};
  for (const node of nodes) {
    const inputs = node.inputs ?? {};
    const positive = inputs.positive;
    if (summary.text === undefined && isLink(positive)) summary.text = textOf(prompt[String(positive[0])] as ApiNode);
    for (const name of ["seed", "noise_seed"]) {
      if (summary.seed === undefined && typeof inputs[name] === "number") summary.seed = inputs[name] as number;
    }
    if (summary.size === undefined && typeof inputs.width === "number" && typeof inputs.height === "number") {
      summary.size = `${inputs.width}×${inputs.height}`;
    }
  }
  summary.text ??= nodes.map(textOf).find((text) => text !== undefined);
  return summary;
}

/** `"a large red circle…" · seed 42 · 64×64`, or the node count when there is nothing else to say. */
export function summaryLine(prompt: Record<string, unknown>): string {
  const { text, seed, size } = summarize(prompt);
  const quoted = text === undefined ? undefined : `“${text.length > MAX_TEXT ? `${text.slice(0, MAX_TEXT)}…` : text}”`;
  const parts = [quoted, seed === undefined ? undefined : `seed ${seed}`, size].filter(Boolean);
  return parts.length ? parts.join(" · ") : `${Object.keys(prompt).length} nodes`;
}

export function clockTime(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function duration(ms: number): string {
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}
