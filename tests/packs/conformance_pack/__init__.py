"""A custom node pack written purely in ComfyUI's convention, importing ComfyUI's module names, used
to check that Loom runs packs with ComfyUI's execution semantics."""

from .basic import BASIC_NODES
from .flow import FLOW_NODES
from .routes import ROUTE_NODES

NODE_CLASS_MAPPINGS = {**BASIC_NODES, **FLOW_NODES, **ROUTE_NODES}
NODE_DISPLAY_NAME_MAPPINGS = {"TestLazyMix": "Lazy Mix"}
WEB_DIRECTORY = "./web"
