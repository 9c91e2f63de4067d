"""2,000+ mutated workflows and malformed requests: no 5xx, the server stays up, and a valid prompt
still runs afterwards. Seeded, so a failure replays."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import random
from typing import Any

import aiohttp

from tests.server.conftest import Server, connect, graph

ODD_VALUES: list[Any] = [
    None,
    True,
    -1,
    0,
    10**9,
    2**64,
    -(2**70),
    1e308,
    -1e-308,
    "",
    "x" * 5000,
    "../../etc/passwd",
    "\x00",
    [],
    {},
    ["1"],
    ["1", 0, 0],
    ["9", 0],
    ["1", -1],
    ["1", 99],
    ["2", 0],
    [["1", 0]],
    {"a": 1},
    "NaN",
    "😀",
]
ROUTES = [
    ("GET", "/view"),
    ("GET", "/history"),
    ("GET", "/api/jobs"),
    ("GET", "/object_info/x"),
    ("GET", "/models/x"),
    ("POST", "/queue"),
    ("POST", "/history"),
    ("POST", "/interrupt"),
    ("POST", "/free"),
    ("POST", "/api/run"),
    ("GET", "/api/jobs/x"),
    ("GET", "/history/x"),
    ("POST", "/upload/image"),
    ("DELETE", "/prompt"),
]
QUERY_KEYS = [
    "filename",
    "subfolder",
    "type",
    "preview",
    "channel",
    "max_items",
    "offset",
    "status",
    "limit",
    "sort_by",
    "sort_order",
    "token",
]


def odd(rng: random.Random) -> Any:
    """A fresh copy, so that mutations never alias (and never build cycles through) shared values."""
    return copy.deepcopy(rng.choice(ODD_VALUES))


def mutate(rng: random.Random) -> Any:
    prompt: Any = copy.deepcopy(graph(color=rng.randrange(1 << 24), prefix="fuzz"))
    for _ in range(rng.randint(1, 4)):
        # an earlier mutation may have broken the shape this one needs
        with contextlib.suppress(KeyError, TypeError, AttributeError, IndexError):
            prompt = mutate_once(rng, prompt)
    return prompt


def mutate_once(rng: random.Random, prompt: Any) -> Any:
    node = prompt[rng.choice(list(prompt))] if isinstance(prompt, dict) and prompt else None
    choice = rng.randrange(8)
    if choice == 0 and node:
        node["inputs"][rng.choice(list(node["inputs"]) or ["x"])] = odd(rng)
    elif choice == 1 and node:
        node["class_type"] = rng.choice([odd(rng), "EmptyImage", "SaveImage", "Explode", "WaitForFile"])
    elif choice == 2 and node:
        node.pop(rng.choice(["inputs", "class_type"]), None)
    elif choice == 3 and node:
        node["inputs"] = odd(rng)
    elif choice == 4 and isinstance(prompt, dict):
        prompt[rng.choice(["3", "", "1" * 300, "__proto__"])] = rng.choice([odd(rng), copy.deepcopy(node)])
    elif choice == 5 and isinstance(prompt, dict):
        prompt["1"]["inputs"]["width"] = ["2", 0]  # a cycle through the saver
    elif choice == 6:
        prompt = odd(rng)
    else:
        prompt = {
            str(i): {"class_type": "ImageInvert", "inputs": {"image": [str(i + 1), 0]}} for i in range(50)
        }
    return prompt


def envelope(rng: random.Random) -> Any:
    body: dict[str, Any] = {"prompt": mutate(rng)}
    for key in rng.sample(
        ["number", "front", "extra_data", "client_id", "prompt_id", "partial_execution_targets"],
        rng.randint(0, 3),
    ):
        body[key] = odd(rng)
    return body


def raw_body(rng: random.Random) -> bytes:
    text = json.dumps(envelope(rng))
    cut = rng.randrange(len(text) + 1)
    return rng.choice(
        [text[:cut], text[:cut] + "\x00" + text[cut:], "[" * 100_000, "{" + '"a":' * 5000, "\udcff"]
    ).encode("utf-8", "surrogatepass")


async def fire(session: aiohttp.ClientSession, server: Server, rng: random.Random) -> int:
    kind = rng.randrange(4)
    if kind == 0:
        request = session.post(f"{server.url}/prompt", json=envelope(rng))
    elif kind == 1:
        request = session.post(
            f"{server.url}/{rng.choice(['prompt', 'api/prompt', 'api/run'])}", data=raw_body(rng)
        )
    elif kind == 2:
        method, path = rng.choice(ROUTES)
        params = {k: str(odd(rng))[:300] for k in rng.sample(QUERY_KEYS, rng.randint(0, 4))}
        request = session.request(method, server.url + path, params=params, json=odd(rng))
    else:
        headers = {
            "Content-Type": rng.choice(
                ["multipart/form-data; boundary=x", "multipart/form-data", "text/plain"]
            )
        }
        request = session.post(f"{server.url}/upload/image", data=raw_body(rng), headers=headers)
    async with request as response:
        await response.read()
        return response.status


async def test_fuzzed_requests_never_5xx_and_the_server_keeps_working(server: Server) -> None:
    rng = random.Random(20240601)
    statuses: dict[int, int] = {}
    async with connect(server) as client:
        gate = asyncio.Semaphore(8)

        async def one() -> None:
            async with gate:
                status = await fire(client.session, server, rng)
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(one() for _ in range(2200)))
        assert not [s for s in statuses if s >= 500], statuses
        assert sum(statuses.values()) == 2200
        await client.post("/queue", {"clear": True})
        await client.post("/interrupt")
        await client.wait_queue_empty()
        done = await client.post(
            "/api/run", {"prompt": graph(color=0xFEDCBA, prefix="after-fuzz"), "timeout": 30}
        )
        assert done["status"] == "success"
