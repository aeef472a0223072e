"""Rank placement under torchrun and the vLLM look-ahead batching, with CUDA and the engine faked.

Only what is outside our code is faked: the CUDA runtime (which, like the real one, reads
CUDA_VISIBLE_DEVICES once, at its first call) and VLMEvalKit's `run` module (which, like the
real one, narrows CUDA_VISIBLE_DEVICES to the local rank's GPUs when imported).
"""

from __future__ import annotations

import sys
import types

import pytest
import torch

from satori_cli.evaluation import worker

NARROWING_RUN = """
import os
import vlmeval

vlmeval.CALLS.append("narrow")
rank, procs = int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"])
gpus = os.environ["CUDA_VISIBLE_DEVICES"].split(",")
per = len(gpus) // procs
os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[per * rank : per * (rank + 1)])
"""


class FakeCuda:
    """The CUDA runtime as torch sees it: the device list is fixed at the first call."""

    def __init__(self, calls: list[str]) -> None:
        self.calls = calls
        self.enumerated: list[str] | None = None
        self.current = 0

    def _devices(self) -> list[str]:
        if self.enumerated is None:
            import os

            self.enumerated = [x for x in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if x]
        return self.enumerated

    def is_available(self) -> bool:
        self.calls.append("is_available")
        return bool(self._devices())

    def device_count(self) -> int:
        self.calls.append("device_count")
        return len(self._devices())

    def set_device(self, index: int) -> None:
        self.calls.append(f"set_device:{index}")
        assert 0 <= index < len(self._devices())
        self.current = index

    def current_device(self) -> int:
        return self.current

    def gpu_in_use(self) -> str:
        """The machine's GPU id the current device stands for."""
        return self._devices()[self.current]


@pytest.fixture
def model_device():
    """The model class's device lookup, imported before VLMEvalKit is faked.

    Importing `evaluation.model` loads the real VLMEvalKit (about 10 s), so it is done here, by the
    tests that need it, not when every test file is collected.
    """
    from satori_cli.evaluation.model import model_device

    return model_device


@pytest.fixture
def rank1_of_2(monkeypatch, tmp_path):
    """Local rank 1 of 2 on a 2-GPU machine, VLMEvalKit's run module faked, CUDA faked."""
    calls: list[str] = []
    (tmp_path / "run.py").write_text(NARROWING_RUN)
    package = types.ModuleType("vlmeval")
    package.__path__ = [str(tmp_path)]
    package.CALLS = calls
    monkeypatch.setitem(sys.modules, "vlmeval", package)
    monkeypatch.setitem(sys.modules, "vlmeval.run", None)  # restored (or removed) after the test
    del sys.modules["vlmeval.run"]  # so the import below runs the fake module
    cuda = FakeCuda(calls)
    for name in ("is_available", "device_count", "set_device", "current_device"):
        monkeypatch.setattr(torch.cuda, name, getattr(cuda, name))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    return cuda


def test_rank_is_placed_after_vlmeval_narrows_the_gpus(model_device, rank1_of_2):
    cuda = rank1_of_2
    device = worker.start_process()
    assert cuda.calls[0] == "narrow"  # no CUDA call before VLMEvalKit's narrowing
    assert device == "cuda:0" and "set_device:0" in cuda.calls
    assert cuda.gpu_in_use() == "1"  # rank 1 runs on the machine's GPU 1, not GPU 0
    assert model_device() == "cuda:0"


def test_rank_finds_its_gpu_even_if_cuda_started_before_the_narrowing(model_device, rank1_of_2):
    cuda = rank1_of_2
    assert torch.cuda.is_available()  # something touched CUDA first: it enumerates GPUs 0 and 1
    device = worker.start_process()
    assert device == "cuda:1" and cuda.gpu_in_use() == "1"
    assert model_device() == "cuda:1"


@pytest.mark.parametrize(
    ("before", "now", "count", "index"),
    [
        ("0,1", "1", 1, 0),  # runtime started after the narrowing
        ("0,1", "1", 2, 1),  # runtime started before it
        (None, "3", 4, 3),  # no variable before: VLMEvalKit listed the GPUs with nvidia-smi
        ("4,5,6,7", "6,7", 4, 2),  # two GPUs per rank, early runtime
        ("0", "0", 1, 0),  # one process: nothing narrowed
        (None, None, 1, 0),
    ],
)
def test_device_index(before, now, count, index):
    assert worker.device_index(before, now, count) == index


# -- look-ahead batching ----------------------------------------------------------------------
@pytest.fixture
def look_ahead():
    """The model module's `LookAhead`, imported by the tests that need it (it loads VLMEvalKit)."""
    from satori_cli.evaluation.model import LookAhead

    return LookAhead


def _items(n: int) -> list[list[dict]]:
    return [[{"type": "text", "value": f"item {i}"}] for i in range(n)]


class Engine:
    """Records each batch; answers each prompt with its own text."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, messages: list[list[dict]]) -> list[str]:
        texts = [m[0]["value"] for m in messages]
        self.batches.append(texts)
        return [f"answer to {t}" for t in texts]


def test_items_asked_one_by_one_are_generated_in_few_batches(look_ahead):
    engine, items = Engine(), _items(7)
    look = look_ahead(engine, window=3)
    look.bind(items)
    answers = [look.answer(m) for m in items]
    assert answers == [f"answer to item {i}" for i in range(7)]
    assert [len(b) for b in engine.batches] == [3, 3, 1]


def test_resumed_runs_skip_done_items_and_still_map_answers_right(look_ahead):
    engine, items = Engine(), _items(6)
    look = look_ahead(engine, window=4)
    look.bind(items)
    asked = [items[i] for i in (2, 3, 5)]  # VLMEvalKit skips items it already has predictions for
    assert [look.answer(m) for m in asked] == ["answer to item 2", "answer to item 3", "answer to item 5"]
    assert engine.batches == [["item 2", "item 3", "item 4", "item 5"]]


def test_unknown_items_and_unbound_models_are_generated_alone(look_ahead):
    engine = Engine()
    look = look_ahead(engine, window=8)
    assert look.answer(_items(1)[0]) == "answer to item 0"
    look.bind(_items(3))
    assert look.answer([{"type": "text", "value": "elsewhere"}]) == "answer to elsewhere"
    assert engine.batches == [["item 0"], ["elsewhere"]]


def test_an_engine_that_loses_answers_fails_loudly(look_ahead):
    look = look_ahead(lambda batch: ["only one"], window=4)
    look.bind(_items(4))
    with pytest.raises(RuntimeError, match="1 answers for 4 prompts"):
        look.answer(_items(4)[0])
