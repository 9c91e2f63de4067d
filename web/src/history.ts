// Undo/redo by snapshots of the serialised graph; the latest snapshot is kept in localStorage.
import type { LGraph } from "@comfyorg/litegraph";

const STORAGE_KEY = "loom.workflow";
const DEPTH = 60;

export function savedWorkflow(): unknown {
  try {
    const text = localStorage.getItem(STORAGE_KEY);
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

export class ChangeTracker {
  #undo: string[] = [];
  #redo: string[] = [];
  #current = "";
  #pending = false;

  constructor(
    private graph: LGraph,
    private restore: (workflow: unknown) => void,
    private viewport: () => unknown,
  ) {}

  /** Forgets the history: the graph as it is now becomes the starting point. */
  reset(): void {
    this.#undo = [];
    this.#redo = [];
    this.#current = this.#snapshot();
    this.#save();
  }

  /** Records the graph if it changed since the last check; cheap to call after every gesture. */
  check(): void {
    if (this.#pending) return;
    this.#pending = true;
    setTimeout(() => {
      this.#pending = false;
      const snapshot = this.#snapshot();
      if (snapshot === this.#current) return;
      this.#undo.push(this.#current);
      if (this.#undo.length > DEPTH) this.#undo.shift();
      this.#redo = [];
      this.#current = snapshot;
      this.#save();
    });
  }

  undo(): void {
    this.#step(this.#undo, this.#redo);
  }

  redo(): void {
    this.#step(this.#redo, this.#undo);
  }

  #step(from: string[], to: string[]): void {
    const snapshot = from.pop();
    if (snapshot === undefined) return;
    to.push(this.#current);
    this.#current = snapshot;
    this.restore(JSON.parse(snapshot));
    this.#save();
  }

  #snapshot(): string {
    const data = this.graph.serialize();
    // The viewport is saved with the workflow but moving the view is not an undoable change.
    if (data.extra) delete data.extra.ds;
    return JSON.stringify(data);
  }

  #save(): void {
    try {
      const data = JSON.parse(this.#current);
      data.extra = { ...data.extra, ds: this.viewport() };
      localStorage.setItem(STORAGE_KEY, JSON.stringify(data));
    } catch (error) {
      console.warn("could not keep the workflow in localStorage", error);
    }
  }

  /** Stores the current viewport too (called when the view moves; not an undo step). */
  saveViewport(): void {
    if (this.#current) this.#save();
  }
}
