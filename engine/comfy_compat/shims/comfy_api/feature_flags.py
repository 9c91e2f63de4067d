"""ComfyUI's `comfy_api.feature_flags`: what the server and each websocket client support. Loom's
clients announce no flags, and Loom sends previews without metadata, so packs take their plain path."""

from __future__ import annotations

from typing import Any

SERVER_FEATURE_FLAGS: dict[str, Any] = {"supports_preview_metadata": False}


def get_connection_feature(
    sockets_metadata: dict[str, dict[str, Any]], sid: str, feature_name: str, default: Any = False
) -> Any:
    return sockets_metadata.get(sid, {}).get("feature_flags", {}).get(feature_name, default)


def supports_feature(sockets_metadata: dict[str, dict[str, Any]], sid: str, feature_name: str) -> bool:
    return get_connection_feature(sockets_metadata, sid, feature_name, False) is True


def get_server_features() -> dict[str, Any]:
    return dict(SERVER_FEATURE_FLAGS)
