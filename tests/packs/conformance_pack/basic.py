"""Numbers, lists, lazy inputs, caching, validation variants, hidden inputs, async and progress."""

import asyncio
import math

import comfy.model_management
from comfy.comfy_types import IO, ComfyNodeABC
from comfy.utils import ProgressBar

ANY = IO.ANY


class StubFloat:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT", {"default": 0.0, "min": -1e9, "max": 1e9})}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "go"
    CATEGORY = "Testing"

    def go(self, value):
        return (value,)


class StubInt(StubFloat):
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0, "min": -1000, "max": 1000})}}

    RETURN_TYPES = ("INT",)


class TestScale:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT", {"forceInput": True}), "factor": ("FLOAT", {"default": 2.0})}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "scale"
    CATEGORY = "Testing"

    def scale(self, value, factor):
        return (value * factor,)


class TestShow(ComfyNodeABC):
    """Output node that shows its value and passes it on (an output node with a socket output)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (ANY,)}}

    RETURN_TYPES = (ANY,)
    FUNCTION = "show"
    OUTPUT_NODE = True
    CATEGORY = "Testing"

    def show(self, value):
        return {"ui": {"values": [value]}, "result": (value,)}


class TestLazyMix:
    """a * (1 - t) + b * t, asking only for the inputs the mix needs."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "a": ("FLOAT", {"lazy": True, "forceInput": True}),
                "b": ("FLOAT", {"lazy": True, "forceInput": True}),
                "t": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0}),
            }
        }

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "mix"
    CATEGORY = "Testing"

    def check_lazy_status(self, t, a=None, b=None):
        needed = []
        if a is None and t < 1.0:
            needed.append("a")
        if b is None and t > 0.0:
            needed.append("b")
        return needed

    def mix(self, t, a=None, b=None):
        return ((a or 0.0) * (1 - t) + (b or 0.0) * t,)


class TestCustomIsChanged:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT", {"forceInput": True}), "should_change": ("BOOLEAN",)}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "go"
    CATEGORY = "Testing"

    @classmethod
    def IS_CHANGED(cls, should_change=False, value=None):
        return math.nan if should_change else False

    def go(self, value, should_change):
        return (value,)


class TestMakeList:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value1": (ANY,)}, "optional": {"value2": (ANY,), "value3": (ANY,)}}

    RETURN_TYPES = (ANY,)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "make"
    CATEGORY = "Testing"

    def make(self, **kwargs):
        return ([kwargs[f"value{i}"] for i in range(1, 4) if f"value{i}" in kwargs],)


class TestSumList:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"values": ("FLOAT", {"forceInput": True})}}

    INPUT_IS_LIST = True
    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "total"
    CATEGORY = "Testing"

    def total(self, values):
        return (float(sum(values)),)


class TestVariadicSum:
    """Undeclared inputs reach **kwargs."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"start": ("FLOAT", {"default": 0.0})}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "total"
    CATEGORY = "Testing"

    def total(self, start, **kwargs):
        return (start + sum(kwargs.values()),)


class TestValidateTypes:
    """VALIDATE_INPUTS on the value: literals of any type reach it; linked inputs arrive as None."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT,IMAGE",)}}

    RETURN_TYPES = ("FLOAT",)
    FUNCTION = "go"
    CATEGORY = "Testing"

    @classmethod
    def VALIDATE_INPUTS(cls, value=None):
        if value is not None and not isinstance(value, float):
            return f"Invalid type of value: {type(value).__name__}"
        return True

    def go(self, value):
        return (value,)


class TestValidateInputTypes(TestValidateTypes):
    """Taking input_types: link type checks are the node's job."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT",)}}

    @classmethod
    def VALIDATE_INPUTS(cls, input_types):
        if input_types.get("value", "FLOAT") not in ("FLOAT", "INT"):
            return f"value must be a number, got {input_types['value']}"
        return True


class TestValidateKwargs(TestValidateTypes):
    """**kwargs: every input reaches it and the built-in min/max checks are skipped."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("FLOAT", {"min": 0.0, "max": 1.0})}}

    @classmethod
    def VALIDATE_INPUTS(cls, **kwargs):
        return True if kwargs["value"] is None or kwargs["value"] <= 5.0 else "value must be at most 5"


class TestHidden:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"value": ("INT", {"default": 1})},
            "hidden": {
                "prompt": "PROMPT",
                "unique_id": "UNIQUE_ID",
                "extra_pnginfo": "EXTRA_PNGINFO",
                "dynprompt": "DYNPROMPT",
            },
        }

    RETURN_TYPES = ()
    FUNCTION = "go"
    OUTPUT_NODE = True
    CATEGORY = "Testing"

    def go(self, value, prompt, unique_id, extra_pnginfo, dynprompt):
        shown = {
            "unique_id": unique_id,
            "prompt_nodes": sorted(prompt),
            "extra_pnginfo": extra_pnginfo,
            "own_class": dynprompt.get_node(unique_id)["class_type"],
        }
        return {"ui": {"hidden": [shown]}}


class TestSleep:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (ANY,), "seconds": ("FLOAT", {"default": 1.0})}}

    RETURN_TYPES = (ANY,)
    FUNCTION = "sleep"
    CATEGORY = "Testing"

    async def sleep(self, value, seconds):
        bar = ProgressBar(2)
        await asyncio.sleep(seconds / 2)
        bar.update(1)
        await asyncio.sleep(seconds / 2)
        bar.update(1)
        return (value,)


class TestProgress:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"steps": ("INT", {"default": 3})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "go"
    CATEGORY = "Testing"

    def go(self, steps):
        bar = ProgressBar(steps)
        for _ in range(steps):
            comfy.model_management.throw_exception_if_processing_interrupted()
            bar.update(1)
        return (steps,)


class TestRaise:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": (ANY,)}}

    RETURN_TYPES = (ANY,)
    FUNCTION = "go"
    CATEGORY = "Testing"

    def go(self, value):
        raise RuntimeError(f"refusing {value}")


BASIC_NODES = {
    cls.__name__: cls
    for cls in (
        StubFloat,
        StubInt,
        TestScale,
        TestShow,
        TestLazyMix,
        TestCustomIsChanged,
        TestMakeList,
        TestSumList,
        TestVariadicSum,
        TestValidateTypes,
        TestValidateInputTypes,
        TestValidateKwargs,
        TestHidden,
        TestSleep,
        TestProgress,
        TestRaise,
    )
}
