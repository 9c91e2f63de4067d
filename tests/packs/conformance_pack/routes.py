"""A pack's own HTTP route and websocket message, through ComfyUI's PromptServer.instance."""

from aiohttp import web
from server import PromptServer

ANY = "*"


@PromptServer.instance.routes.get("/conformance/ping")
async def ping(request):
    return web.json_response({"pong": True})


def rename_aliases(json_data):
    """An on_prompt handler: the alias class type `TestAlias` becomes StubFloat before validation."""
    for node in (json_data.get("prompt") or {}).values():
        if isinstance(node, dict) and node.get("class_type") == "TestAlias":
            node["class_type"] = "StubFloat"
    return json_data


PromptServer.instance.add_on_prompt_handler(rename_aliases)


class TestMessage:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (ANY,)}, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = (ANY,)
    FUNCTION = "go"
    CATEGORY = "Testing"

    def go(self, value, unique_id):
        PromptServer.instance.send_sync("conformance.message", {"node": unique_id, "value": value})
        return (value,)


ROUTE_NODES = {"TestMessage": TestMessage}
