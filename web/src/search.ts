// The node palette: a search box over every node (name, category, description) with categories.
import { LiteGraph } from "@comfyorg/litegraph";
import type { ObjectInfo } from "./api";
import { orderedInputs } from "./nodeTypes";
import { inputType } from "./widgets";

interface Entry {
  type: string;
  title: string;
  category: string;
  description: string;
  inputs: string[];
  outputs: string[];
  haystack: string;
  /** For testing or deprecated: listed after everything else. */
  hidden: boolean;
}

/** Only nodes that can take (`input`) or give (`output`) a link of this type. */
export interface TypeFilter {
  type: string;
  side: "input" | "output";
}

const FRONTEND_ENTRIES: [string, string, string, string[], string[]][] = [
  ["Note", "Note", "A text note on the canvas", [], []],
  ["Reroute", "Reroute", "Routes a link to tidy the canvas", ["*"], ["*"]],
  ["PrimitiveNode", "Primitive", "One value feeding widget inputs of several nodes", [], ["*"]],
];

const MAX_RESULTS = 60;

export class NodeSearch {
  #entries: Entry[];
  #dialog: HTMLDivElement | null = null;

  constructor(info: ObjectInfo) {
    this.#entries = Object.values(info).map((def) => {
      const title = def.display_name || def.name;
      const description = def.description ?? "";
      const inputs = orderedInputs(def).map(([, spec]) => inputType(spec));
      const hidden = Boolean(def.deprecated || def.dev_only) || def.category.split("/").some((part) => part.startsWith("_"));
      return entry(def.name, title, def.category, description, inputs, def.output, hidden);
    });
    for (const [type, title, description, inputs, outputs] of FRONTEND_ENTRIES) {
      this.#entries.push(entry(type, title, "utils", description, inputs, outputs));
    }
  }

  /**
   * Ranked matches: every word must occur. The whole query matching a display name exactly, then as
   * its prefix, ranks first; then title word hits above category and description hits. Nodes for
   * testing or deprecated come last; an empty query lists categories in order, those last too.
   */
  search(query: string, filter?: TypeFilter): Entry[] {
    const phrase = query.toLowerCase().trim().replace(/\s+/g, " ");
    const words = phrase.split(" ").filter(Boolean);
    const scored: [number, Entry][] = [];
    for (const item of this.#entries) {
      if (filter && !accepts(item, filter)) continue;
      if (!words.every((word) => item.haystack.includes(word))) continue;
      scored.push([relevance(item, phrase, words) - (item.hidden ? 1000 : 0), item]);
    }
    const byCategory = (a: Entry, b: Entry) =>
      a.category.localeCompare(b.category) || a.title.length - b.title.length || a.title.localeCompare(b.title);
    return scored.sort((a, b) => b[0] - a[0] || byCategory(a[1], b[1])).map(([, item]) => item);
  }

  get isOpen(): boolean {
    return this.#dialog !== null;
  }

  close(): void {
    this.#dialog?.remove();
    this.#dialog = null;
  }

  open(at: { x: number; y: number }, onPick: (type: string) => void, filter?: TypeFilter): void {
    this.close();
    const dialog = document.createElement("div");
    dialog.className = "search panel";
    dialog.style.left = `${Math.min(at.x, innerWidth - 420)}px`;
    dialog.style.top = `${Math.min(at.y, innerHeight - 420)}px`;
    const input = document.createElement("input");
    input.placeholder = filter ? `Search nodes that take ${filter.type}…` : "Search nodes…";
    input.setAttribute("aria-label", "Search nodes");
    const list = document.createElement("ul");
    dialog.append(input, list);
    document.body.append(dialog);
    this.#dialog = dialog;

    let results: Entry[] = [];
    let selected = 0;
    const pick = (item: Entry | undefined) => {
      this.close();
      if (item) onPick(item.type);
    };
    const render = () => {
      results = this.search(input.value, filter).slice(0, MAX_RESULTS);
      selected = Math.min(selected, Math.max(0, results.length - 1));
      list.replaceChildren();
      let category: string | null = null;
      results.forEach((item, i) => {
        if (!input.value && item.category !== category) {
          category = item.category;
          const header = document.createElement("li");
          header.className = "category";
          header.textContent = category || "uncategorised";
          list.append(header);
        }
        const row = document.createElement("li");
        row.className = i === selected ? "selected" : "";
        row.dataset.type = item.type;
        row.title = item.description;
        row.innerHTML = `<span></span><small></small>`;
        row.children[0].textContent = item.title;
        row.children[1].textContent = item.category;
        row.addEventListener("pointerdown", (event) => {
          event.preventDefault();
          pick(item);
        });
        list.append(row);
      });
      list.querySelector(".selected")?.scrollIntoView({ block: "nearest" });
    };
    input.addEventListener("input", () => {
      selected = 0;
      render();
    });
    input.addEventListener("keydown", (event) => {
      event.stopPropagation();
      if (event.key === "ArrowDown") selected = Math.min(selected + 1, results.length - 1);
      else if (event.key === "ArrowUp") selected = Math.max(selected - 1, 0);
      else if (event.key === "Enter") return pick(results[selected]);
      else if (event.key === "Escape") return this.close();
      else return;
      event.preventDefault();
      render();
    });
    input.addEventListener("blur", () => setTimeout(() => this.#dialog === dialog && this.close(), 100));
    render();
    input.focus();
  }
}

function entry(
  type: string,
  title: string,
  category: string,
  description: string,
  inputs: string[],
  outputs: string[],
  hidden = false,
): Entry {
  const haystack = [type, title, category, description].join("\n").toLowerCase();
  return { type, title, category, description, inputs, outputs, haystack, hidden };
}

function relevance(item: Entry, phrase: string, words: string[]): number {
  const title = item.title.toLowerCase();
  const type = item.type.toLowerCase();
  if (!phrase) return 0;
  if (title === phrase || type === phrase) return 100;
  if (title.startsWith(phrase)) return 50;
  const titleWords = title.split(/[^a-z0-9]+/);
  let score = 0;
  for (const word of words) {
    if (titleWords.includes(word)) score += 5;
    else if (title.startsWith(word)) score += 4;
    else if (title.includes(word) || type.includes(word)) score += 3;
    else if (item.category.toLowerCase().includes(word)) score += 2;
    else score += 1;
  }
  return score;
}

function accepts(item: Entry, filter: TypeFilter): boolean {
  // Dragged from an output: the new node needs a matching input; from an input: a matching output.
  if (filter.side === "output") return item.inputs.some((type) => LiteGraph.isValidConnection(filter.type, type));
  return item.outputs.some((type) => LiteGraph.isValidConnection(type, filter.type));
}
