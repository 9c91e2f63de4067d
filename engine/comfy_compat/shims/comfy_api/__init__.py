"""ComfyUI's `comfy_api`: the versioned node API (V3) packs import as `comfy_api.latest`,
`comfy_api.v0_0_2` or `comfy_api.v0_0_1`. V3 node classes translate into Loom's NodeSpec through the
class convention they also expose (`INPUT_TYPES`, `RETURN_TYPES`, `FUNCTION`...), so they run on
Loom's one executor."""
