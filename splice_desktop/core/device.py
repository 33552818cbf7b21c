"""Device choice: cuda > mps > cpu, overridable, and the precision that goes with it."""

from __future__ import annotations

VALID_DEVICES = ("auto", "cuda", "mps", "cpu")


def available_devices() -> list[str]:
    """Devices torch can use on this machine, best first (cpu is always last and always present)."""
    import torch

    found: list[str] = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def pick_device(preference: str = "auto") -> str:
    """Resolve a user preference to a concrete device.

    "auto" takes the best available. An explicit device that is not available raises ValueError with the
    list of what is, rather than silently running somewhere else.
    """
    preference = (preference or "auto").lower()
    if preference not in VALID_DEVICES:
        raise ValueError(f"Unknown device {preference!r}; choose one of {', '.join(VALID_DEVICES)}.")
    available = available_devices()
    if preference == "auto":
        return available[0]
    if preference not in available:
        raise ValueError(
            f"Device {preference!r} is not available on this machine (available: {', '.join(available)})."
        )
    return preference


def precision_for(device: str) -> str:
    """Half precision only on CUDA: on CPU fp16 is slower and on MPS it loses accuracy for little gain."""
    return "fp16" if device == "cuda" else "fp32"
