// Widgets for /object_info inputs: numbers, text, toggles, combos, and seeds' "control after generate".
import type { LGraphNode } from "@comfyorg/litegraph";
import type { IBaseWidget } from "@comfyorg/litegraph/dist/types/widgets";
import { api, type InputSpec } from "./api";
import { MultilineWidget } from "./textWidget";

export const WIDGET_TYPES = new Set(["INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"]);
export const CONTROL_WIDGET = "control_after_generate";
export const CONTROL_MODES = ["fixed", "increment", "decrement", "randomize"];
const MAX_SAFE_SEED = 2 ** 50;

type Options = Record<string, unknown>;

/** The socket type of an input spec: a list of values is a COMBO. */
export function inputType(spec: InputSpec): string {
  return Array.isArray(spec[0]) ? "COMBO" : String(spec[0]);
}

export function comboValues(spec: InputSpec): unknown[] {
  if (Array.isArray(spec[0])) return spec[0];
  const options = (spec[1] ?? {}) as Options;
  return Array.isArray(options.options) ? options.options : [];
}

/** Whether an input is shown as a widget (with a socket beside it) rather than as a plain socket. */
export function hasWidget(spec: InputSpec): boolean {
  return WIDGET_TYPES.has(inputType(spec)) && !(spec[1] as Options | undefined)?.forceInput;
}

function decimals(step: number): number {
  const text = String(step);
  return text.includes(".") ? text.split(".")[1].length : 0;
}

/** Adds the widget for one input; returns it (and adds a control widget after seeds). */
export function addInputWidget(node: LGraphNode, name: string, spec: InputSpec): IBaseWidget {
  const type = inputType(spec);
  const options = (spec[1] ?? {}) as Options;
  const widget = createWidget(node, name, type, spec, options);
  if (typeof options.tooltip === "string") widget.tooltip = options.tooltip;
  const wantsControl = options.control_after_generate ?? (type === "INT" && (name === "seed" || name === "noise_seed"));
  if (wantsControl) addControlWidget(node, widget);
  return widget;
}

function createWidget(node: LGraphNode, name: string, type: string, spec: InputSpec, options: Options): IBaseWidget {
  const min = options.min as number | undefined;
  const redraw = () => node.setDirtyCanvas(true, true);
  const max = options.max as number | undefined;
  switch (type) {
    case "INT": {
      const step = Number(options.step ?? 1) || 1;
      const base = min ?? 0;
      const snap = (value: number) => {
        widget.value = Math.round((value - base) / step) * step + base;
      };
      const widget = node.addWidget("number", name, Number(options.default ?? min ?? 0), snap, { min, max, step2: step, precision: 0 });
      return widget;
    }
    case "FLOAT": {
      const step = Number(options.step ?? 0.01) || 0.01;
      const round = typeof options.round === "number" && options.round > 0 ? options.round : step;
      const precision = Math.max(decimals(round), decimals(step));
      const snap = (value: number) => {
        widget.value = Number((Math.round(value / round) * round).toFixed(precision));
      };
      const kind = options.display === "slider" ? "slider" : "number";
      const widget = node.addWidget(kind, name, Number(options.default ?? min ?? 0), snap, { min, max, step2: step, precision });
      return widget;
    }
    case "STRING": {
      const value = String(options.default ?? "");
      if (options.multiline) {
        return node.addCustomWidget(new MultilineWidget(node, name, value, String(options.placeholder ?? name)));
      }
      return node.addWidget("text", name, value, redraw, {});
    }
    case "BOOLEAN":
      return node.addWidget("toggle", name, Boolean(options.default ?? false), redraw, {
        on: options.label_on as string | undefined,
        off: options.label_off as string | undefined,
      });
    default: {
      const values = comboValues(spec).map(String);
      const value = options.default !== undefined ? String(options.default) : (values[0] ?? "");
      const widget = node.addWidget("combo", name, value, redraw, { values });
      if (options.image_upload) addUploadButton(node, widget);
      return widget;
    }
  }
}

function addControlWidget(node: LGraphNode, target: IBaseWidget): void {
  const control = node.addWidget("combo", CONTROL_WIDGET, "randomize", () => node.setDirtyCanvas(true), {
    values: CONTROL_MODES,
  });
  control.tooltip = "How the value changes after each queued run";
  target.linkedWidgets = [control];
  (control as ControlWidget).controls = target;
}

export interface ControlWidget extends IBaseWidget {
  controls?: IBaseWidget;
}

/** After a prompt is queued, seeds move on as their "control after generate" says. */
export function applyControls(node: LGraphNode): void {
  for (const widget of node.widgets ?? []) {
    const target = (widget as ControlWidget).controls;
    if (!target || node.getSlotFromWidget(target)?.link != null) continue;
    const { min = 0, max = MAX_SAFE_SEED, step2 = 1 } = target.options as { min?: number; max?: number; step2?: number };
    const current = Number(target.value);
    const high = Math.min(max, MAX_SAFE_SEED);
    const next: Record<string, number> = {
      increment: current + step2,
      decrement: current - step2,
      randomize: min + Math.floor(Math.random() * ((high - min) / step2 + 1)) * step2,
    };
    const mode = String(widget.value);
    if (mode in next) target.value = Math.min(high, Math.max(min, next[mode]));
  }
}

function addUploadButton(node: LGraphNode, combo: IBaseWidget): void {
  const button = node.addWidget("button", "choose file to upload", "image", () => {
    const input = document.createElement("input");
    input.type = "file";
    input.accept = "image/*";
    input.onchange = async () => {
      const file = input.files?.[0];
      if (!file) return;
      const saved = await api.uploadImage(file);
      const name = saved.subfolder ? `${saved.subfolder}/${saved.filename}` : saved.filename;
      const values = (combo.options.values ?? []) as string[];
      if (!values.includes(name)) values.push(name);
      combo.value = name;
      node.setDirtyCanvas(true, true);
    };
    input.click();
  });
  button.serialize = false;
}
