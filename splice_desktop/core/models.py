"""Loading open_clip models: hub tags through open_clip's cache, local checkpoints, and a tiny random demo model.

Weights are never faked: when they cannot be had, ``WeightsUnavailableError`` says what failed and how to
fix it. The only random-weight model is the explicitly named tiny demo model, and everything that shows its
results labels them as meaningless (``LoadedModel.meaningless``).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from splice_desktop.core.cache import safe_name
from splice_desktop.core.device import pick_device, precision_for
from splice_desktop.core.errors import WeightsUnavailableError

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"

TINY_MODEL = "splice-tiny-random"
TINY_SEED = 0
TINY_WARNING = "tiny random demo model: concepts and predictions are meaningless"

# A small but complete open_clip CLIP config: a 2-layer ViT on 64 px images (4x4 patches) and a 2-layer
# causal text tower with the standard tokenizer, so every code path (hooks, causal text trick) is exercised.
TINY_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2},
}

OPENAI_TAG = "openai"


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for: an architecture plus either a pretrained tag or a local checkpoint file."""

    name: str = DEFAULT_MODEL
    pretrained: Optional[str] = DEFAULT_PRETRAINED
    checkpoint: Optional[str] = None

    @property
    def is_tiny(self) -> bool:
        """The random demo model itself (a checkpoint file for the tiny architecture is the user's own weights)."""
        return self.name == TINY_MODEL and not self.checkpoint

    @property
    def architecture(self) -> str:
        """The open_clip config name actually built; OpenAI weights need the QuickGELU variant."""
        if self.pretrained == OPENAI_TAG and not self.name.endswith("-quickgelu") and not self.checkpoint:
            return f"{self.name}-quickgelu"
        return self.name

    @property
    def label(self) -> str:
        if self.is_tiny:
            return f"{TINY_MODEL} ({TINY_WARNING})"
        if self.checkpoint:
            return f"{self.name} @ {Path(self.checkpoint).name}"
        return f"{self.name} / {self.pretrained or 'random init'}"

    @classmethod
    def tiny(cls) -> "ModelSpec":
        return cls(name=TINY_MODEL, pretrained=None, checkpoint=None)


@dataclass
class LoadedModel:
    """A ready model on its device with its preprocessing and tokenizer, plus identity for cache keys."""

    spec: ModelSpec
    model: Any
    preprocess: Any
    tokenizer: Any
    device: str
    embed_dim: int
    image_size: int
    weights_fingerprint: str
    meaningless: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Filename-safe identity of architecture + weights; every on-disk cache is keyed by it."""
        return f"{safe_name(self.spec.architecture)}-{self.weights_fingerprint[:16]}"

    @property
    def dtype(self) -> Any:
        return next(self.model.parameters()).dtype

    def encode_image_tensor(self, batch: Any) -> np.ndarray:
        """Encode a preprocessed batch [B, 3, H, W]; returns L2-normalised float32 rows on the CPU."""
        import torch

        with torch.inference_mode():
            feats = self.model.encode_image(batch.to(self.device, dtype=self.dtype))
            feats = torch.nn.functional.normalize(feats.float(), dim=-1)
        return feats.cpu().numpy().astype(np.float32, copy=False)


def _register_tiny_config() -> None:
    from open_clip import factory

    configs = getattr(factory, "_MODEL_CONFIGS", None)
    if configs is None:  # pragma: no cover - guards a future open_clip refactor
        raise RuntimeError("open_clip no longer exposes _MODEL_CONFIGS; update _register_tiny_config")
    if TINY_MODEL not in configs:
        configs[TINY_MODEL] = TINY_CONFIG


def _file_fingerprint(path: Path) -> str:
    """Cheap but content-sensitive: size, plus hashes of the first and last MiB (a full hash of 600 MB is slow)."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 20))
        if size > (2 << 20):
            handle.seek(-(1 << 20), os.SEEK_END)
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()


def _read_state_dict(path: Path) -> dict[str, Any]:
    """Read a checkpoint file safely: safetensors, or torch with weights_only=True (no arbitrary pickles)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure becomes a user-facing message
            raise WeightsUnavailableError(
                f"Could not read checkpoint {path}: {exc}. Use a .safetensors file or a plain torch state_dict "
                "(files that need arbitrary pickled code are refused for safety)."
            ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"Checkpoint {path} does not contain a state_dict (found {type(state).__name__}).")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _load_checkpoint_into(model: Any, spec: ModelSpec, path: Path) -> None:
    state = _read_state_dict(path)
    result = model.load_state_dict(state, strict=False)
    # open_clip buffers such as attn_mask / position_ids may legitimately be absent from a file.
    missing = [k for k in result.missing_keys if not k.endswith(("attn_mask", "position_ids"))]
    if missing or result.unexpected_keys:
        shown = ", ".join((missing + list(result.unexpected_keys))[:5])
        raise WeightsUnavailableError(
            f"Checkpoint {path.name} does not fit architecture {spec.architecture}: "
            f"{len(missing)} missing and {len(result.unexpected_keys)} unexpected keys (e.g. {shown}). "
            "Choose the architecture the checkpoint was trained with."
        )


def load_model(spec: ModelSpec, device: str = "auto", cache_dir: Optional[str] = None) -> LoadedModel:
    """Build the model and load its weights, or raise WeightsUnavailableError with a fix.

    * tiny demo model: random weights from a fixed seed (deterministic across runs), flagged meaningless;
    * ``spec.checkpoint``: a local .safetensors / torch file, loaded strictly into ``spec.architecture``;
    * ``spec.pretrained``: an open_clip tag, resolved through open_clip's own download cache
      (``cache_dir`` or open_clip's default, usually ~/.cache/huggingface or ~/.cache/clip).
    """
    import open_clip
    import torch

    dev = pick_device(device)
    precision = precision_for(dev)
    _register_tiny_config()  # so the tiny architecture also accepts a checkpoint file
    warnings: list[str] = []

    if spec.is_tiny:
        _register_tiny_config()
        torch.manual_seed(TINY_SEED)
        model, _, preprocess = open_clip.create_model_and_transforms(TINY_MODEL, pretrained=None, device=dev)
        fingerprint = hashlib.sha256(f"{TINY_MODEL}-seed{TINY_SEED}".encode()).hexdigest()
        warnings.append(TINY_WARNING)
    elif spec.checkpoint:
        path = Path(spec.checkpoint).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"Checkpoint file not found: {path}. Pick an existing .safetensors or .pt file for {spec.name}."
            )
        if spec.architecture not in open_clip.list_models():
            raise WeightsUnavailableError(f"Unknown open_clip architecture {spec.architecture!r}.")
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.architecture, pretrained=None, device="cpu"
        )
        _load_checkpoint_into(model, spec, path)
        model = model.to(dev)
        fingerprint = _file_fingerprint(path)
    else:
        if spec.architecture not in open_clip.list_models():
            raise WeightsUnavailableError(
                f"Unknown open_clip architecture {spec.architecture!r}. "
                "See open_clip.list_models() for valid names."
            )
        if not spec.pretrained:
            raise WeightsUnavailableError(
                f"No weights chosen for {spec.name}: give a pretrained tag (e.g. {DEFAULT_PRETRAINED}) "
                "or a local checkpoint file."
            )
        from splice_desktop.core import weights as weights_cache

        cfg = weights_cache.pretrained_cfg(spec.architecture, spec.pretrained)
        if not cfg and not Path(spec.pretrained).expanduser().is_file():
            known = ", ".join(open_clip.list_pretrained_tags_by_model(spec.architecture.replace("-quickgelu", ""))[:8])
            raise WeightsUnavailableError(
                f"open_clip has no pretrained tag {spec.pretrained!r} for {spec.architecture}"
                + (f" (known tags include: {known})" if known else "")
                + ". Pick a listed tag or a local checkpoint file."
            )
        cached = weights_cache.find_cached_weights(spec.architecture, spec.pretrained, cache_dir)
        if cached is None and not weights_cache.hub_reachable():
            raise WeightsUnavailableError(
                f"The weights {spec.name} / {spec.pretrained} are not in the local cache "
                f"({weights_cache.describe_cache_locations(cache_dir)}) and the model hub cannot be reached "
                "(offline). Fix: on a machine with internet run once "
                f"`python -c \"import open_clip; open_clip.create_model_and_transforms('{spec.architecture}', "
                f"pretrained='{spec.pretrained}')\"` and copy ~/.cache/huggingface to this machine, or download the "
                "checkpoint file and choose it as a local checkpoint (Preferences > Model, or --checkpoint)."
            )
        # A cached hub file is loaded by path: no network request at all, and no minute of offline retries.
        by_path = cached is not None and weights_cache.is_hub_file(cfg, cached)
        try:
            if by_path:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    spec.architecture, pretrained=str(cached), device=dev,
                    **weights_cache.preprocess_overrides(cfg),
                )
            else:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    spec.architecture, pretrained=spec.pretrained, device=dev, cache_dir=cache_dir
                )
        except Exception as exc:  # noqa: BLE001 - hub / network / file errors all become one clear message
            raise WeightsUnavailableError(
                f"Could not load pretrained weights {spec.name} / {spec.pretrained}: {type(exc).__name__}: {exc}. "
                "This machine may be offline. Fix: on a machine with internet run once "
                f"`python -c \"import open_clip; open_clip.create_model_and_transforms('{spec.architecture}', "
                f"pretrained='{spec.pretrained}')\"` to fill the open_clip cache and copy the cache folder here, "
                "or download the checkpoint file and choose it as a local checkpoint."
            ) from exc
        fingerprint = hashlib.sha256(f"{spec.architecture}/{spec.pretrained}".encode()).hexdigest()

    if precision == "fp16":
        model = model.half()
    model.eval()
    tokenizer = open_clip.get_tokenizer(spec.architecture)
    embed_dim = int(model.text_projection.shape[1]) if getattr(model, "text_projection", None) is not None else int(
        model.visual.output_dim
    )
    image_size = model.visual.image_size
    image_size = int(image_size[0] if isinstance(image_size, (tuple, list)) else image_size)
    return LoadedModel(
        spec=spec,
        model=model,
        preprocess=preprocess,
        tokenizer=tokenizer,
        device=dev,
        embed_dim=embed_dim,
        image_size=image_size,
        weights_fingerprint=fingerprint,
        meaningless=spec.is_tiny,
        warnings=warnings,
    )
