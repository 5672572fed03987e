"""Conformance of every registered ``*_tiny`` model (timm's tests/test_models.py, with assertions).

Each ``*_tiny`` model must carry ``example_inputs`` metadata: ``(generator) -> tuple`` of inputs for
``model(*inputs)``. The checks are plain functions, and the last tests show that each one can fail.
"""

from __future__ import annotations

import pytest
import torch

from damokit import registry
from damokit.engine import load_checkpoint, save_checkpoint

TINY = registry.entries("model", "*_tiny")


def _tensors(out) -> list[torch.Tensor]:
    """Every floating-point tensor in a model's output (tensor, tuple, NamedTuple or dict)."""
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() or out.is_complex() else []
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in _tensors(item)]
    return []


def _build(entry, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return entry.fn()


def _inputs(entry, seed: int = 1) -> tuple:
    return tuple(entry.meta["example_inputs"](torch.Generator().manual_seed(seed)))


def check_forward_backward(model: torch.nn.Module, inputs: tuple) -> None:
    model.train()
    outputs = _tensors(model(*inputs))
    assert outputs, "the model returned no floating-point tensor"
    for out in outputs:
        assert torch.isfinite(out).all(), "non-finite output"
    params = dict(model.named_parameters())
    if not params:
        return  # a parameter-free baseline (e.g. repeat_last): nothing to differentiate
    sum(o.float().sum() if not o.is_complex() else o.abs().sum() for o in outputs).backward()
    no_grad = sorted(n for n, p in params.items() if p.requires_grad and p.grad is None)
    assert not no_grad, f"parameters without gradient: {no_grad[:10]}"
    bad = sorted(n for n, p in params.items() if p.grad is not None and not torch.isfinite(p.grad).all())
    assert not bad, f"non-finite gradients: {bad[:10]}"


def check_eval_deterministic(model: torch.nn.Module, inputs: tuple) -> None:
    model.eval()
    with torch.no_grad():
        first, second = _tensors(model(*inputs)), _tensors(model(*inputs))
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def check_save_load(model: torch.nn.Module, fresh: torch.nn.Module, inputs: tuple, tmp_path) -> None:
    """A model built from another seed, loaded from the saved file, gives identical outputs."""
    path = save_checkpoint(tmp_path / "model.safetensors", {"model": model.state_dict()})
    fresh.load_state_dict(load_checkpoint(path)["model"])
    model.eval()
    fresh.eval()
    with torch.no_grad():
        for a, b in zip(_tensors(model(*inputs)), _tensors(fresh(*inputs)), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def check_batch_independent(model: torch.nn.Module, inputs: tuple) -> None:
    """In eval mode, sample i's output does not depend on the other samples of the batch.

    Compared are the outputs whose leading dimension is the batch (scalars such as auxiliary losses are not).
    """
    batch = inputs[0].shape[0]
    assert batch > 1, "example_inputs must hold at least two samples"
    model.eval()
    with torch.no_grad():
        full = _tensors(model(*inputs))
        single = _tensors(model(*(x[:1] if isinstance(x, torch.Tensor) else x for x in inputs)))
    compared = 0
    for a, b in zip(full, single, strict=True):
        if a.ndim and a.shape[0] == batch:
            torch.testing.assert_close(a[:1], b, rtol=1e-4, atol=1e-5)
            compared += 1
    assert compared, "no output has the batch as its leading dimension"


def test_tiny_models_carry_example_inputs():
    missing = [e.name for e in TINY if "example_inputs" not in e.meta]
    assert not missing, f"*_tiny models without example_inputs metadata: {missing}"


@pytest.mark.parametrize("entry", TINY, ids=lambda e: e.name)
def test_tiny_model_conformance(entry, tmp_path):
    if "example_inputs" not in entry.meta:
        pytest.skip("no example_inputs (reported by test_tiny_models_carry_example_inputs)")
    model, twin = _build(entry, seed=0), _build(entry, seed=0)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"same seed, different {name}")
    inputs = _inputs(entry)
    check_forward_backward(model, inputs)
    check_eval_deterministic(model, inputs)
    check_save_load(model, _build(entry, seed=1), inputs, tmp_path)
    if entry.meta.get("per_sample", False):
        check_batch_independent(model, inputs)


# The checks above can fail: each toy model below breaks one rule.


class _UnsavedRandomness(torch.nn.Module):
    """Draws a permutation at construction and keeps it as a plain attribute (not a buffer)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.perm = torch.randperm(4)

    def forward(self, x):
        return self.lin(x)[:, self.perm]


class _UnusedParameter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.used, self.unused = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.used(x)


class _BatchMixing(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x) - self.lin(x).mean(0)


def test_checks_catch_broken_models(tmp_path):
    x = (torch.randn(3, 4),)
    torch.manual_seed(0)
    model = _UnsavedRandomness()
    torch.manual_seed(5)
    with pytest.raises(AssertionError):
        check_save_load(model, _UnsavedRandomness(), x, tmp_path)
    with pytest.raises(AssertionError, match="without gradient: \\['unused.bias', 'unused.weight'\\]"):
        check_forward_backward(_UnusedParameter(), x)
    with pytest.raises(AssertionError):
        check_batch_independent(_BatchMixing(), x)
    with pytest.raises(AssertionError, match="non-finite output"):
        check_forward_backward(torch.nn.Linear(4, 4), (torch.full((2, 4), float("nan")),))
