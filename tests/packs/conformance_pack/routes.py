"""A pack's own HTTP route and websocket message, through ComfyUI's PromptServer.instance."""

from aiohttp import web
from server import PromptServer

ANY = "*"


@PromptServer.instance.routes.get("/conformance/ping")
async def ping(request):
    return web.json_response({"pong": True})


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
