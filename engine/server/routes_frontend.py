"""What ComfyUI's official front end asks of a server besides the core API: model listings with
file details, safetensors metadata, translations, workflow templates, subgraph blueprints, node
replacements, mask uploads, and the front end's own files when it is the page served at `/`.

`--front-end comfy` serves the installed `comfyui-frontend-package`'s `static/` folder;
`--front-end-root PATH` serves any folder holding a built front end (ComfyUI's flag of that name).
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.folders import UnsafePathError, safe_join
from engine.server.config import ServerConfig
from engine.server.http import ApiError
from engine.server.keys import CONFIG, PACKS, REGISTRY

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

EXAMPLE_FOLDERS = ("example_workflows", "example", "examples", "workflow", "workflows")
HIDDEN_MODEL_KINDS = ("configs", "custom_nodes")
MODEL_SUFFIXES = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft", ".gguf")
MAX_METADATA_HEADER = 1 << 20


def package_folder(package: str, folder: str) -> Path | None:
    """`folder` inside an installed package, found without importing it (None when not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    return path if path.is_dir() else None


def comfy_front_end() -> Path | None:
    return package_folder("comfyui_frontend_package", "static")


def templates_folder() -> Path | None:
    return package_folder("comfyui_workflow_templates", "templates")


# -- models ---------------------------------------------------------------------------------------


@routes.get("/experiment/models")
async def model_folders(request: web.Request) -> web.Response:
    models = request.app[CONFIG].folders.models
    return web.json_response(
        [
            {"name": kind, "folders": [str(p) for p in paths]}
            for kind, paths in models.items()
            if kind not in HIDDEN_MODEL_KINDS
        ]
    )


@routes.get("/experiment/models/{folder}")
async def model_details(request: web.Request) -> web.Response:
    models, kind = request.app[CONFIG].folders.models, request.match_info["folder"]
    if kind not in models:
        raise ApiError(f"no model folder {kind[:100]!r}", 404)
    return web.json_response(await asyncio.to_thread(_model_details, models[kind]))


def _model_details(roots: list[Path]) -> list[dict[str, Any]]:
    """ComfyUI's listing: name (relative), pathIndex (which folder), modified, created, size."""
    found: list[dict[str, Any]] = []
    for index, root in enumerate(roots):
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if any(part.startswith(".") for part in relative.parts) or ".git" in relative.parts:
                continue
            if path.is_file() and path.suffix.lower() in MODEL_SUFFIXES:
                stat = path.stat()
                found.append(
                    {
                        "name": relative.as_posix(),
                        "pathIndex": index,
                        "modified": stat.st_mtime,
                        "created": stat.st_ctime,
                        "size": stat.st_size,
                    }
                )
    return found


@routes.get("/view_metadata/{folder}")
async def view_metadata(request: web.Request) -> web.Response:
    """The `__metadata__` of a .safetensors model's header; 404 when there is none."""
    filename = request.query.get("filename", "")
    if not filename.endswith(".safetensors"):
        raise ApiError("filename must name a .safetensors file", 404)
    folders = request.app[CONFIG].folders
    try:
        path = await asyncio.to_thread(folders.model_path, request.match_info["folder"], filename)
    except (FileNotFoundError, UnsafePathError):
        raise ApiError(f"no model {filename[:200]!r}", 404) from None
    metadata = await asyncio.to_thread(_metadata, path)
    if metadata is None:
        raise ApiError(f"{filename[:200]!r} has no metadata", 404)
    return web.json_response(metadata)


def _metadata(path: Path) -> dict[str, Any] | None:
    """Only the header is read, and at most 1 MiB of it (ComfyUI's limit for this route)."""
    try:
        with path.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if not 0 < length <= MAX_METADATA_HEADER:
                return None
            header = json.loads(handle.read(length))
    except (OSError, ValueError):
        return None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return metadata if isinstance(metadata, dict) else None


# -- translations, templates, blueprints ----------------------------------------------------------


@routes.get("/i18n")
async def i18n(request: web.Request) -> web.Response:
    """Packs' `locales/<lang>/` files merged as ComfyUI does, with Loom's node names and
    descriptions as the English `nodeDefs` (a pack's own translation wins)."""
    return web.json_response(await asyncio.to_thread(_translations, request.app))


def _translations(app: web.Application) -> dict[str, Any]:
    english: dict[str, Any] = {}
    for spec in app[REGISTRY]:
        entry = {"display_name": spec.display_name}
        if spec.description:
            entry["description"] = spec.description
        english[spec.id] = entry
    translations: dict[str, Any] = {"en": {"nodeDefs": english}}
    for pack in app[PACKS].packs:
        locales = Path(pack.path) / "locales"
        if pack.status != "loaded" or not locales.is_dir():
            continue
        for language in sorted(p for p in locales.iterdir() if p.is_dir()):
            found = _read_object(language / "main.json")
            for extra in ("nodeDefs", "commands", "settings"):
                data = _read_object(language / f"{extra}.json")
                if data:
                    found[extra] = data
            translations[language.name] = _merge(translations.get(language.name, {}), found)
    return translations


def _read_object(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("Cannot read translation file %s: %s", path, exc)
        return {}
    return value if isinstance(value, dict) else {}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _pack_folders(app: web.Application, names: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(pack name, folder) for each loaded folder pack's first existing folder among `names`."""
    found: list[tuple[str, Path]] = []
    for pack in app[PACKS].packs:
        root = Path(pack.path)
        if pack.status == "loaded" and root.is_dir():
            found.extend((pack.name, root / name) for name in names if (root / name).is_dir())
    return found


@routes.get("/workflow_templates")
async def workflow_templates(request: web.Request) -> web.Response:
    """Packs' example workflows: pack name -> workflow names (files under /api/workflow_templates/)."""
    return web.json_response(await asyncio.to_thread(_examples, request.app))


def _examples(app: web.Application) -> dict[str, list[str]]:
    listing: dict[str, list[str]] = {}
    for pack, folder in _pack_folders(app, EXAMPLE_FOLDERS):
        listing.setdefault(pack, []).extend(p.stem for p in sorted(folder.glob("*.json")))
    return listing


@routes.get("/workflow_templates/{pack}/{name:.+}")
async def workflow_template(request: web.Request) -> web.StreamResponse:
    for pack, folder in _pack_folders(request.app, EXAMPLE_FOLDERS):
        if pack == request.match_info["pack"]:
            try:
                path = safe_join(folder, request.match_info["name"])
            except UnsafePathError:
                raise ApiError("invalid template path", 403) from None
            if path.is_file():
                return web.FileResponse(path)
    raise ApiError("no such template", 404)


@routes.get("/global_subgraphs")
async def global_subgraphs(request: web.Request) -> web.Response:
    """Subgraph blueprints that packs ship in a `subgraphs/` folder: id -> {source, name, info, data}."""
    return web.json_response(await asyncio.to_thread(_blueprints, request.app))


@routes.get("/global_subgraphs/{id}")
async def global_subgraph(request: web.Request) -> web.Response:
    found = (await asyncio.to_thread(_blueprints, request.app)).get(request.match_info["id"])
    if found is None:
        raise ApiError("no such subgraph", 404)
    return web.json_response(found)


def _blueprints(app: web.Application) -> dict[str, dict[str, Any]]:
    blueprints: dict[str, dict[str, Any]] = {}
    for pack, folder in _pack_folders(app, ("subgraphs",)):
        for path in sorted(folder.glob("*.json")):
            try:
                data = path.read_text(encoding="utf-8")
            except OSError:
                continue
            blueprints[f"{pack}/{path.stem}"] = {
                "source": "custom_node",
                "name": path.stem,
                "info": {"node_pack": pack},
                "data": data,
            }
    return blueprints


@routes.get("/node_replacements")
async def node_replacements(request: web.Request) -> web.Response:
    """Old node type -> the nodes that replace it. Loom registers none, and says so."""
    return web.json_response({})


# -- masks ------------------------------------------------------------------------------------------


@routes.post("/upload/mask")
async def upload_mask(request: web.Request) -> web.Response:
    """The mask editor's save: the uploaded image's alpha becomes the alpha of `original_ref`'s image,
    stored as a new input file (ComfyUI's /upload/mask)."""
    from engine.server import routes_files

    config = request.app[CONFIG]
    form = await request.post()
    upload, reference = form.get("image"), form.get("original_ref")
    if not isinstance(upload, web.FileField) or not isinstance(reference, str):
        raise ApiError("send multipart/form-data with an 'image' file and an 'original_ref' field")
    try:
        ref = json.loads(reference)
        if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str):
            raise ValueError("original_ref needs a filename")
    except ValueError as exc:
        raise ApiError(f"original_ref: {exc}") from None
    original = routes_files.resolve(
        config, str(ref.get("type") or "output"), str(ref.get("subfolder") or ""), _plain(ref["filename"])
    )
    data = upload.file.read(config.max_upload_bytes + 1)
    if len(data) > config.max_upload_bytes:
        raise ApiError(f"mask is larger than {config.max_upload_bytes} bytes", 413)
    merged = await asyncio.to_thread(_apply_mask, original, data, config.max_image_pixels)
    routes_files._check_filename(upload.filename)
    folder_type, subfolder = str(form.get("type") or "input"), str(form.get("subfolder") or "")
    overwrite = str(form.get("overwrite", "")).lower() in ("true", "1")
    name = await asyncio.to_thread(
        routes_files._store, config, folder_type, subfolder, upload.filename, merged, overwrite
    )
    return web.json_response({"name": name, "subfolder": subfolder, "type": folder_type})


def _plain(filename: str) -> str:
    """ComfyUI's annotated names ("x.png [output]") lose the annotation; the folder comes from type."""
    for suffix in (" [output]", " [input]", " [temp]"):
        filename = filename.removesuffix(suffix)
    return filename


def _apply_mask(original: Path, mask: bytes, max_pixels: int) -> bytes:
    from PIL import Image, PngImagePlugin, UnidentifiedImageError

    if not original.is_file():
        raise ApiError(f"no image {original.name!r} to mask", 404)
    try:
        with Image.open(original) as source, Image.open(io.BytesIO(mask)) as painted:
            if source.width * source.height > max_pixels:
                raise ApiError("image is too large")
            info = PngImagePlugin.PngInfo()
            for key, value in getattr(source, "text", {}).items():
                info.add_text(key, value)
            image = source.convert("RGBA")
            alpha = painted.convert("RGBA").getchannel("A")
            if alpha.size != image.size:
                alpha = alpha.resize(image.size)
            image.putalpha(alpha)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", compress_level=4, pnginfo=info)
    except (UnidentifiedImageError, OSError) as exc:
        raise ApiError(f"mask or image is not readable: {exc}") from None
    return buffer.getvalue()


# -- the page ---------------------------------------------------------------------------------------


def setup_front_end(app: web.Application, config: ServerConfig) -> bool:
    """Serve another front end at `/` (after every API route); False when Loom's canvas is to be used."""
    root = config.front_end_root
    if root is None:
        return False
    index = root / "index.html"

    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(index, headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", page)
    app.router.add_static("/", root)
    return True


def setup_templates(app: web.Application) -> None:
    """`/templates/*` from the `comfyui-workflow-templates` package; without it, empty indexes, so
    a front end hears "no templates" rather than an error."""
    folder = templates_folder()
    if folder is not None:
        app.router.add_static("/templates", folder)
        return

    async def empty_index(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "index_logo.json":
            return web.json_response({})
        if name.startswith("index") and name.endswith(".json"):
            return web.json_response([])
        raise ApiError("workflow templates are not installed (pip install comfyui-workflow-templates)", 404)

    app.router.add_get("/templates/{name}", empty_index)
