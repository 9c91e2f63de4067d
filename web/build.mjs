// Bundles src/ into dist/: content-hashed JS and CSS (cache forever) and an index.html naming them.
import { build } from "esbuild";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename } from "node:path";
import { gzipSync } from "node:zlib";

const dist = new URL("./dist/", import.meta.url);
await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });

const result = await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  sourcemap: "linked",
  format: "esm",
  target: "es2022",
  outdir: "dist/assets",
  entryNames: "[name]-[hash]",
  assetNames: "[name]-[hash]",
  metafile: true,
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs).map((path) => basename(path));
const script = outputs.find((name) => name.endsWith(".js"));
const style = outputs.find((name) => name.endsWith(".css"));
const html = (await readFile(new URL("./index.html", import.meta.url), "utf8"))
  .replace("%SCRIPT%", `assets/${script}`)
  .replace("%STYLE%", `assets/${style}`);
await writeFile(new URL("./index.html", dist), html);
for (const path of Object.keys(result.metafile.outputs).filter((p) => !p.endsWith(".map"))) {
  // The server sends these pre-compressed siblings to browsers that accept gzip.
  const packed = gzipSync(await readFile(path), { level: 9 });
  await writeFile(`${path}.gz`, packed);
  console.log(`${path}  ${(result.metafile.outputs[path].bytes / 1024).toFixed(0)} KiB (${(packed.length / 1024).toFixed(0)} KiB gzipped)`);
}
