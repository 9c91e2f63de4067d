"""Files: GET /view and POST /upload/image, confined to the output, input and temp folders."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import mimetypes
import os
from pathlib import Path
from urllib.parse import quote

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from engine.folders import MAX_NAME_BYTES, UnsafePathError, safe_join
from engine.server.config import ServerConfig
from engine.server.http import ApiError
from engine.server.keys import CONFIG

routes = web.RouteTableDef()

IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff"}
MAX_CONCURRENT_UPLOADS = 2
UPLOAD_SLOTS = web.AppKey("upload_slots", asyncio.Semaphore)
# PNG, JPEG, GIF, WebP (RIFF), BMP, TIFF (both byte orders).
IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*")
PREVIEW_FORMATS = {"webp": "WEBP", "jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}


def resolve(config: ServerConfig, folder_type: str, subfolder: str, filename: str) -> Path:
    """A path inside the folder named by `type`; 400 for anything that would leave it."""
    try:
        return safe_join(config.folders.by_type(folder_type), subfolder, filename)
    except UnsafePathError as exc:
        raise ApiError(str(exc)) from None


@routes.get("/view")
async def view(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG]
    filename = request.query.get("filename", "")
    if not filename:
        raise ApiError("filename is required")
    path = resolve(config, request.query.get("type", "output"), request.query.get("subfolder", ""), filename)
    if not await asyncio.to_thread(_is_file, path):
        raise ApiError(f"no file {filename[:200]!r}", 404)
    preview, channel = request.query.get("preview"), request.query.get("channel", "rgba")
    if channel not in ("rgba", "rgb", "a"):
        raise ApiError("channel must be rgba, rgb or a")
    disposition = f"filename*=UTF-8''{quote(path.name)}"
    if preview is None and channel == "rgba":
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        headers = {"Content-Disposition": f"inline; {disposition}", "X-Content-Type-Options": "nosniff"}
        if content_type not in IMAGE_TYPES:
            # Anything else is a download, so a file in the output folder can never run as a page here.
            content_type, headers["Content-Disposition"] = (
                "application/octet-stream",
                f"attachment; {disposition}",
            )
        return web.FileResponse(path, headers={**headers, "Content-Type": content_type})
    data, content_type = await asyncio.to_thread(_convert, path, preview, channel, config.max_image_pixels)
    return web.Response(body=data, content_type=content_type, headers={"Content-Disposition": disposition})


def _convert(path: Path, preview: str | None, channel: str, max_pixels: int) -> tuple[bytes, str]:
    """ComfyUI's preview=<format>;<quality> and channel=rgb|a conversions."""
    from PIL import Image, UnidentifiedImageError

    image_format, quality = "PNG", 90
    if preview:
        name, _, level = preview.partition(";")
        if name.lower() not in PREVIEW_FORMATS:
            raise ApiError(f"preview format must be one of {', '.join(PREVIEW_FORMATS)}")
        image_format = PREVIEW_FORMATS[name.lower()]
        if level:
            if not level.isdigit() or not 1 <= int(level) <= 100:
                raise ApiError("preview quality must be an integer from 1 to 100")
            quality = int(level)
    try:
        with Image.open(path) as source:
            if source.width * source.height > max_pixels:
                raise ApiError("image is too large to convert")
            image: Image.Image = source
            if channel == "a":
                alpha = (
                    source.getchannel("A") if "A" in source.getbands() else Image.new("L", source.size, 255)
                )
                image = Image.new("RGBA", source.size)
                image.putalpha(alpha)
            elif channel == "rgb" or image_format == "JPEG":
                image = source.convert("RGB")
            buffer = io.BytesIO()
            image.save(buffer, format=image_format, quality=quality)
    except (UnidentifiedImageError, OSError) as exc:
        raise ApiError(f"cannot convert {path.name!r}: not a readable image ({exc})") from None
    return buffer.getvalue(), f"image/{image_format.lower()}"


@routes.post("/upload/image")
async def upload_image(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    if not request.content_type.startswith("multipart/"):
        raise ApiError("send multipart/form-data with an 'image' file field")
    try:
        async with _upload_slots(request.app):
            fields, upload = await _read_form(request, config.max_upload_bytes)
    except (ValueError, RuntimeError, HttpProcessingError) as exc:
        # aiohttp's multipart parser reports hostile or broken bodies with these
        raise ApiError(f"malformed multipart body: {str(exc)[:200]}") from None
    if upload is None:
        raise ApiError("no 'image' file field in the upload")
    filename, data = upload
    _check_filename(filename)
    await asyncio.to_thread(_check_image, data, config.max_image_pixels)
    folder_type, subfolder = fields.get("type") or "input", fields.get("subfolder", "")
    overwrite = fields.get("overwrite", "").lower() in ("true", "1")
    name = await asyncio.to_thread(_store, config, folder_type, subfolder, filename, data, overwrite)
    return web.json_response({"name": name, "subfolder": subfolder, "type": folder_type})


async def _read_form(request: web.Request, limit: int) -> tuple[dict[str, str], tuple[str, bytes] | None]:
    fields: dict[str, str] = {}
    upload: tuple[str, bytes] | None = None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.name == "image" and part.filename is not None:
            upload = (part.filename, await _read_limited(part, limit, image=True))
        elif part.name in ("type", "subfolder", "overwrite"):
            fields[part.name] = (await _read_limited(part, 4096)).decode("utf-8", "replace")
    return fields, upload


async def _read_limited(part: BodyPartReader, limit: int, image: bool = False) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(1 << 16):
        if image and not chunks and not chunk.startswith(IMAGE_SIGNATURES):
            # Refused at the first chunk, not after buffering up to the upload limit.
            raise ApiError("upload is not a readable image: unknown file signature")
        size += len(chunk)
        if size > limit:
            raise ApiError(f"{part.name} is larger than {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _upload_slots(app: web.Application) -> asyncio.Semaphore:
    """Uploads are held in memory while they are checked: at most MAX_CONCURRENT_UPLOADS at once
    (others wait their turn), so memory stays within that many times the upload limit."""
    if UPLOAD_SLOTS not in app:
        app[UPLOAD_SLOTS] = asyncio.Semaphore(MAX_CONCURRENT_UPLOADS)
    return app[UPLOAD_SLOTS]


def _check_filename(filename: str) -> None:
    if filename in ("", ".", "..") or any(c in filename for c in "/\\\x00") or len(filename) > 255:
        raise ApiError(f"{filename[:100]!r} is not a plain file name")


def _check_image(data: bytes, max_pixels: int) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > max_pixels:
                raise ApiError(f"image is {image.width}×{image.height}; the limit is {max_pixels} pixels")
            image.verify()
    except ApiError:
        raise
    except Exception as exc:  # Pillow raises many types for hostile files; any of them means "not an image"
        raise ApiError(f"upload is not a readable image: {type(exc).__name__}") from None


def _store(
    config: ServerConfig, folder_type: str, subfolder: str, filename: str, data: bytes, overwrite: bool
) -> str:
    """Write the upload; an existing different file keeps its name and the upload gets ` (n)`."""
    path = resolve(config, folder_type, subfolder, filename)
    digest = hashlib.sha256(data).digest()
    stem, suffix, n = path.stem, path.suffix, 1
    while not overwrite and path.exists() and not _same(path, digest):
        renamed = f"{stem} ({n}){suffix}"
        if len(renamed.encode()) > MAX_NAME_BYTES:
            raise ApiError(f"{filename[:100]!r} exists and is too long to be stored as {renamed[:40]!r}...")
        path = resolve(config, folder_type, subfolder, renamed)
        n += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    if overwrite or not path.exists():
        write_atomically(path, data)
    return path.name


def write_atomically(path: Path, data: bytes) -> None:
    """Write beside the target and rename: a full disk leaves no truncated file under the real name."""
    temporary = path.with_name(f".{path.name[:200]}.{os.getpid()}.part")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise ApiError(f"no space left to store {path.name[:100]!r}", 507) from None
        raise


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name the system cannot look up (too long): no such file
        return False


def _same(path: Path, digest: bytes) -> bool:
    return path.is_file() and hashlib.sha256(path.read_bytes()).digest() == digest
