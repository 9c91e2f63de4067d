// A multiline text widget: the text is drawn wrapped on the canvas; a click opens a textarea over it.
import { BaseWidget, type LGraphNode } from "@comfyorg/litegraph";
import type { DrawWidgetOptions, WidgetEventOptions } from "@comfyorg/litegraph/dist/widgets/BaseWidget";
import type { IBaseWidget } from "@comfyorg/litegraph/dist/types/widgets";

const LINE_HEIGHT = 15;

export class MultilineWidget extends BaseWidget<IBaseWidget> {
  constructor(node: LGraphNode, name: string, value: string, placeholder: string) {
    super({ type: "customtext", name, value, options: { multiline: true }, y: 0, placeholder } as IBaseWidget, node);
  }

  computeLayoutSize() {
    return { minHeight: 4 * LINE_HEIGHT + 6, maxHeight: 1000, minWidth: 200 };
  }

  drawWidget(ctx: CanvasRenderingContext2D, { width }: DrawWidgetOptions): void {
    const { margin } = BaseWidget;
    const height = this.computedHeight ?? 66;
    const boxHeight = height - 4;
    ctx.save();
    ctx.fillStyle = this.background_color;
    ctx.strokeStyle = this.outline_color;
    ctx.beginPath();
    ctx.roundRect(margin, this.y, width - margin * 2, boxHeight, 6);
    ctx.fill();
    ctx.stroke();
    ctx.clip();
    const text = String(this.value ?? "");
    ctx.fillStyle = text ? this.text_color : this.secondary_text_color;
    ctx.font = "12px ui-monospace, monospace";
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    const lines = wrap(ctx, text || this.name, width - margin * 2 - 12);
    const visible = Math.max(1, Math.floor((boxHeight - 8) / LINE_HEIGHT));
    lines.slice(0, visible).forEach((line, i) => ctx.fillText(line, margin + 6, this.y + 5 + i * LINE_HEIGHT));
    ctx.restore();
  }

  onClick({ node, canvas }: WidgetEventOptions): void {
    const { margin } = BaseWidget;
    const [offsetX, offsetY] = canvas.ds.offset;
    const scale = canvas.ds.scale;
    const rect = canvas.canvas.getBoundingClientRect();
    const editor = document.createElement("textarea");
    editor.className = "text-editor";
    editor.value = String(this.value ?? "");
    editor.spellcheck = false;
    Object.assign(editor.style, {
      left: `${rect.left + (node.pos[0] + margin + offsetX) * scale}px`,
      top: `${rect.top + (node.pos[1] + this.y + offsetY) * scale}px`,
      width: `${(node.size[0] - margin * 2) * scale}px`,
      height: `${Math.max(80, ((this.computedHeight ?? 66) - 4) * scale)}px`,
      fontSize: `${Math.max(11, 12 * scale)}px`,
    });
    const commit = () => {
      if (!editor.isConnected) return;
      editor.remove();
      if (editor.value !== this.value) this.setValue(editor.value, { e: undefined!, node, canvas });
      canvas.setDirty(true, true);
    };
    editor.addEventListener("blur", commit);
    editor.addEventListener("keydown", (event) => {
      event.stopPropagation();
      if (event.key === "Escape" || (event.key === "Enter" && (event.ctrlKey || event.metaKey))) editor.blur();
    });
    document.body.append(editor);
    editor.focus();
  }
}

function wrap(ctx: CanvasRenderingContext2D, text: string, width: number): string[] {
  const lines: string[] = [];
  for (const paragraph of text.split("\n")) {
    let line = "";
    for (const word of paragraph.split(" ")) {
      const candidate = line ? `${line} ${word}` : word;
      if (line && ctx.measureText(candidate).width > width) {
        lines.push(line);
        line = word;
      } else {
        line = candidate;
      }
    }
    lines.push(line);
  }
  return lines;
}
