"""A pack written only against ComfyUI's V3 node API: its nodes exist only through
`comfy_entrypoint()`, as in newer packs."""

from comfy_api.latest import ComfyExtension, io, ui


class Repeat(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3Repeat",
            display_name="Repeat Text (V3)",
            category="v3",
            inputs=[
                io.String.Input("text", default="ab"),
                io.Int.Input("times", default=2, min=1, max=10),
                io.Combo.Input("joiner", options=["-", "+"], default="-"),
            ],
            outputs=[io.String.Output(display_name="repeated"), io.Int.Output(display_name="length")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def validate_inputs(cls, times):
        return True if times != 7 else "seven is not allowed"

    @classmethod
    def execute(cls, text, times, joiner):
        repeated = joiner.join([text] * times) + f"@{cls.hidden.unique_id}"
        return io.NodeOutput(repeated, len(repeated))


class ShowText(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3ShowText",
            category="v3",
            inputs=[io.String.Input("text", force_input=True)],
            is_output_node=True,
        )

    @classmethod
    async def execute(cls, text):
        return io.NodeOutput(ui=ui.PreviewText(text))


class LazyPick(io.ComfyNode):
    """Only the chosen branch is computed."""

    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3LazyPick",
            category="v3",
            inputs=[
                io.Boolean.Input("first", default=True),
                io.AnyType.Input("a", lazy=True),
                io.AnyType.Input("b", lazy=True),
            ],
            outputs=[io.AnyType.Output()],
        )

    @classmethod
    def check_lazy_status(cls, first, a=None, b=None):
        return ["a"] if first else ["b"]

    @classmethod
    def execute(cls, first, a=None, b=None):
        return io.NodeOutput(a if first else b)


class Preview(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3Preview", category="v3", inputs=[io.Image.Input("images")], is_output_node=True
        )

    @classmethod
    def execute(cls, images):
        return io.NodeOutput(ui=ui.PreviewImage(images, cls=cls))


class Extension(ComfyExtension):
    async def get_node_list(self):
        return [Repeat, ShowText, LazyPick, Preview]


async def comfy_entrypoint():
    return Extension()
