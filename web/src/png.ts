// Reads the text chunks (tEXt and uncompressed iTXt) of a PNG: where Loom and ComfyUI keep workflows.

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

function latin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return text;
}

export function pngTextChunks(buffer: ArrayBuffer): Record<string, string> {
  const bytes = new Uint8Array(buffer);
  if (!SIGNATURE.every((value, i) => bytes[i] === value)) throw new Error("not a PNG file");
  const view = new DataView(buffer);
  const chunks: Record<string, string> = {};
  let offset = 8;
  while (offset + 8 <= bytes.length) {
    const length = view.getUint32(offset);
    const type = latin1(bytes.subarray(offset + 4, offset + 8));
    const data = bytes.subarray(offset + 8, offset + 8 + length);
    if (type === "IEND") break;
    const nul = data.indexOf(0);
    if (type === "tEXt" && nul > 0) {
      chunks[latin1(data.subarray(0, nul))] = latin1(data.subarray(nul + 1));
    } else if (type === "iTXt" && nul > 0 && data[nul + 1] === 0) {
      // keyword \0 compression-flag method language \0 translated-keyword \0 text (UTF-8)
      const language = data.indexOf(0, nul + 3);
      const translated = data.indexOf(0, language + 1);
      if (language > 0 && translated > 0) {
        chunks[latin1(data.subarray(0, nul))] = new TextDecoder().decode(data.subarray(translated + 1));
      }
    }
    offset += 12 + length;
  }
  return chunks;
}
