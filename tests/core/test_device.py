"""Device choice: cuda > mps > cpu, explicit choices are honoured or refused, fp16 only on CUDA."""

from __future__ import annotations

import pytest

from splice_desktop.core import device as dev


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu"), (True, False, "cuda")],
    ids=["cuda-wins", "mps-without-cuda", "cpu-fallback", "cuda-only"],
)
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert dev.pick_device("auto") == expected
    assert dev.available_devices()[-1] == "cpu"


def test_explicit_unavailable_device_is_refused_not_silently_replaced(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match="not available"):
        dev.pick_device("cuda")
    assert dev.pick_device("CPU") == "cpu"
    with pytest.raises(ValueError, match="Unknown device"):
        dev.pick_device("tpu")


def test_half_precision_only_on_cuda() -> None:
    assert dev.precision_for("cuda") == "fp16"
    assert dev.precision_for("mps") == "fp32"
    assert dev.precision_for("cpu") == "fp32"
