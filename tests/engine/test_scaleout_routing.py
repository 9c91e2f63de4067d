"""The routing policy, without Ray: affinity first, then least loaded, labels, no starvation."""

from __future__ import annotations

from engine.scaleout.routing import (
    MAX_SKIPS,
    PendingPrompt,
    RoundRobin,
    WorkerView,
    can_ever_run,
    plan,
    prompt_labels,
    prompt_models,
)


def p(
    prompt_id: str, *models: str, labels: tuple[str, ...] = (), avoid: tuple[str, ...] = (), skipped: int = 0
) -> PendingPrompt:
    return PendingPrompt(prompt_id, frozenset(models), frozenset(labels), frozenset(avoid), skipped)


def w(name: str, *models: str, busy: bool = False, labels: tuple[str, ...] = (), runs: int = 0) -> WorkerView:
    return WorkerView(name, frozenset(labels), busy, frozenset(models), runs)


def test_models_are_read_from_loader_inputs() -> None:
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "2": {"class_type": "LoraLoader", "inputs": {"lora_name": "style.safetensors", "model": ["1", 0]}},
        "3": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "canny.pth"}},
        "4": {"class_type": "SomePackLoader", "inputs": {"weights_name": "pack.gguf", "text_name": "hello"}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "a.safetensors", "clip": ["1", 1]}},
    }
    assert prompt_models(prompt) == {"sd15.safetensors", "style.safetensors", "canny.pth", "pack.gguf"}


def test_labels_come_from_extra_data_worker() -> None:
    assert prompt_labels({"worker": "sdxl"}) == {"sdxl"}
    assert prompt_labels({"worker": ["gpu", "big"]}) == {"gpu", "big"}
    assert prompt_labels({}) == frozenset()


def test_a_free_worker_holding_the_models_wins() -> None:
    workers = [w("a", "x.safetensors"), w("b", "y.safetensors")]
    assert plan([p("1", "y.safetensors")], workers) == [("1", "b")]
    assert sorted(plan([p("1", "y.safetensors"), p("2", "x.safetensors")], workers)) == [
        ("1", "b"),
        ("2", "a"),
    ]


def test_affinity_may_take_a_later_prompt_first() -> None:
    workers = [w("a", "x"), w("b", "y", busy=True)]
    # "1" waits for b (which holds y); a takes "2", whose model it holds.
    assert plan([p("1", "y"), p("2", "x")], workers) == [("2", "a")]


def test_least_loaded_worker_takes_a_new_model() -> None:
    workers = [w("a", "x", runs=3), w("b", runs=5), w("c", "z", runs=0)]
    # b holds nothing another prompt needs: loading there evicts nothing useful.
    assert plan([p("1", "new"), p("2", "x")], workers) == [("2", "a"), ("1", "b")]


def test_a_second_copy_is_loaded_only_when_work_needs_it() -> None:
    busy_holder = [w("a", "x", busy=True), w("b")]
    assert plan([p("1", "x")], busy_holder) == []
    assert plan([p("1", "x"), p("2", "x")], busy_holder) == [("1", "b")]


def test_labels_pin_prompts_and_unmatched_ones_are_known() -> None:
    workers = [w("a", labels=("sd15",)), w("b", labels=("sdxl", "big"))]
    assert plan([p("1", labels=("sdxl",))], workers) == [("1", "b")]
    assert plan([p("1", labels=("b",))], workers) == [("1", "b")]
    assert plan([p("1", labels=("sdxl",)), p("2")], [workers[0], w("b", busy=True, labels=("sdxl",))]) == [
        ("2", "a")
    ]
    assert not can_ever_run(p("1", labels=("tpu",)), workers)


def test_a_prompt_avoids_the_worker_it_died_on_if_it_can() -> None:
    assert plan([p("1", avoid=("a",))], [w("a"), w("b", runs=9)]) == [("1", "b")]
    assert plan([p("1", avoid=("a",))], [w("a")]) == [("1", "a")]


def test_a_prompt_skipped_too_often_goes_first() -> None:
    workers = [w("a", "x"), w("b", "y", busy=True)]
    assert plan([p("1", "y", skipped=MAX_SKIPS), p("2", "x")], workers) == [("1", "a")]


def test_dead_or_busy_workers_take_nothing() -> None:
    workers = [WorkerView("a", alive=False), w("b", busy=True)]
    assert plan([p("1")], workers) == []


def test_round_robin_ignores_models() -> None:
    rr = RoundRobin()
    workers = [w("a", "x"), w("b", "y")]
    assert rr.plan([p("1", "y"), p("2", "x")], workers) == [("1", "a"), ("2", "b")]
