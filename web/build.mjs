// Bundles src/ into dist/: content-hashed JS and CSS (cache forever) and an index.html naming them.
import { build } from "esbuild";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { basename } from "node:path";

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
for (const [path, info] of Object.entries(result.metafile.outputs)) {
  if (!path.endsWith(".map")) console.log(`${path}  ${(info.bytes / 1024).toFixed(0)} KiB`);
}
