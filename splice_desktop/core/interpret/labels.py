"""Published CLIP-InterpreT head labels and property->head sets (shipped data, shown as hints only).

The labels are LLM outputs from TEXTSPAN texts on ImageNet for six checkpoints; for any other model (or a local
checkpoint of unknown origin) there is no label and the UI describes heads by their own TEXTSPAN texts instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

Head = tuple[int, int]

LABELS_PATH = Path(__file__).resolve().parents[2] / "data" / "head_labels.json"


@dataclass(frozen=True)
class ModelLabels:
    """Everything published for one checkpoint."""

    key: str
    model: str
    pretrained: str
    layers: tuple[int, ...]
    labels: dict[Head, str]
    properties: dict[str, tuple[Head, ...]]
    high_ccs: tuple[Head, ...] = ()
    low_ccs: tuple[Head, ...] = ()
    concept_heads: dict[str, tuple[Head, ...]] = field(default_factory=dict)


def _base_name(model_name: str) -> str:
    """OpenAI weights are built with the -quickgelu config; labels are filed under the plain name."""
    return model_name[: -len("-quickgelu")] if model_name.endswith("-quickgelu") else model_name


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def attribution(path: Path = LABELS_PATH) -> dict[str, Any]:
    """Source repo, commit, licence and paper of the shipped labels (the UI shows it next to the hints)."""
    return dict(_load(str(path))["attribution"])


def _pairs(items: list) -> tuple[Head, ...]:
    return tuple((int(l), int(h)) for l, h in items)


def published_models(path: Path = LABELS_PATH) -> list[ModelLabels]:
    out = []
    for m in _load(str(path))["models"]:
        ccs = m.get("ccs", {})
        out.append(
            ModelLabels(
                key=m["key"],
                model=m["model"],
                pretrained=m["pretrained"],
                layers=tuple(m["layers"]),
                labels={(int(h["layer"]), int(h["head"])): str(h["label"]) for h in m["heads"]},
                properties={p: _pairs(v) for p, v in m["properties"].items()},
                high_ccs=_pairs(ccs.get("high", [])),
                low_ccs=_pairs(ccs.get("low", [])),
                concept_heads={k: _pairs(v) for k, v in ccs.get("concept_heads", {}).items()},
            )
        )
    return out


def model_labels(model_name: str, pretrained: Optional[str], path: Path = LABELS_PATH) -> Optional[ModelLabels]:
    """The published record for (architecture, pretrained tag), or None (other models, local checkpoints)."""
    if not pretrained:
        return None
    base = _base_name(model_name)
    for m in published_models(path):
        if m.model == base and m.pretrained == pretrained:
            return m
    return None


def labels_for(model_name: str, pretrained: Optional[str], path: Path = LABELS_PATH) -> Optional[dict[Head, str]]:
    """{(layer, head): one-word label} for the six published checkpoints, else None."""
    m = model_labels(model_name, pretrained, path)
    return dict(m.labels) if m is not None else None


def properties_for(model_name: str, pretrained: Optional[str], path: Path = LABELS_PATH) -> dict[str, tuple[Head, ...]]:
    """Published property -> heads sets (for property-based NN); empty for other models."""
    m = model_labels(model_name, pretrained, path)
    return dict(m.properties) if m is not None else {}


def labels_for_loaded(loaded: Any) -> Optional[ModelLabels]:
    """Labels for a LoadedModel; a local checkpoint or the tiny model has none (origin unknown / random)."""
    spec = getattr(loaded, "spec", None)
    if spec is None or getattr(spec, "checkpoint", None) or getattr(spec, "is_tiny", False):
        return None
    return model_labels(spec.name, spec.pretrained)


def head_title(layer: int, head: int, labels: Optional[dict[Head, str]] = None) -> str:
    """'L10.H5' or 'L10.H5 (Animals?)' - the question mark marks the label as a published hint."""
    base = f"L{layer}.H{head}"
    if labels and (layer, head) in labels:
        return f"{base} ({labels[(layer, head)].rstrip('.')}?)"
    return base
