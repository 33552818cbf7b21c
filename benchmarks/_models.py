"""The random-initialised ViT-B-32 the benchmarks time (pretrained weights cannot be downloaded here, and speed
does not depend on the weight values)."""

from __future__ import annotations

from typing import Any, Optional


def random_vit_b32(spec: Optional[Any] = None) -> Any:
    """ViT-B-32 with random weights (seed 0) and its real preprocessing, wrapped as ``core.models.load_model``
    returns models: real compute cost, meaningless output (flagged as such)."""
    import hashlib

    import open_clip
    import torch

    from splice_desktop.core.models import LoadedModel, ModelSpec

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None, device="cpu")
    model.eval()
    return LoadedModel(
        spec=spec if spec is not None else ModelSpec("ViT-B-32", None),
        model=model,
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer("ViT-B-32"),
        device="cpu",
        embed_dim=int(model.text_projection.shape[1]),
        image_size=224,
        weights_fingerprint=hashlib.sha256(b"vit-b-32-random-benchmark").hexdigest(),
        meaningless=True,
        warnings=["random ViT-B-32 weights (benchmark only)"],
    )
