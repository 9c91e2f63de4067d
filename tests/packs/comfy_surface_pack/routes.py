"""Routes added while the pack imports: through the route table and straight onto the application,
and one that reads the prompt queue, as packs' HTTP endpoints do."""

from aiohttp import web


def setup_routes(server):
    @server.routes.get("/surface/queue")
    async def queue(request):
        running, pending = server.prompt_queue.get_current_queue()
        return web.json_response(
            {
                "remaining": server.prompt_queue.get_tasks_remaining(),
                "pending": len(pending),
                "running": len(running),
            }
        )

    async def supports(request):
        return web.json_response({"supports": list(server.supports)})

    server.app.router.add_get("/surface/supports", supports)
