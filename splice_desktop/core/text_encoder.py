"""Fast text encoding for concept banks: run a causal text tower only over the token positions that exist.

open_clip's ``encode_text`` always runs all 77 positions, but concepts are one to three words (3-6 tokens).
In a causal tower, position i only attends to positions <= i, so the hidden state at the pooled (EOT)
position does not depend on the padding after it. Slicing the tokens, the positional embedding and the causal
mask to the batch's longest sequence therefore gives the same embedding (to float rounding) at a fraction of
the cost. Texts are sorted by length so each batch is sliced as short as possible, then unsorted.

Towers where this is not exact (bidirectional / HF towers, padding masks, CoCa's appended CLS token, "last"
pooling) fall back to stock ``encode_text``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from splice_desktop.core.progress import CancelToken, ProgressFn, check, report

# Pool types whose pooled position is a real token, so everything after it can be dropped.
_TRUNCATABLE_POOLS = ("argmax", "eos", "first")


@dataclass
class _TextTower:
    """The pieces of an open_clip causal text tower, whichever model class holds them."""

    token_embedding: Any
    positional_embedding: Any
    transformer: Any
    ln_final: Any
    attn_mask: Any
    projection: Any
    pool_type: str
    eos_id: Optional[int]


def _tower_from(holder: Any, pool_attr: str, eos_attr: str) -> _TextTower:
    return _TextTower(
        token_embedding=holder.token_embedding,
        positional_embedding=holder.positional_embedding,
        transformer=holder.transformer,
        ln_final=holder.ln_final,
        attn_mask=getattr(holder, "attn_mask", None),
        projection=getattr(holder, "text_projection", None),
        pool_type=getattr(holder, pool_attr, "argmax"),
        eos_id=getattr(holder, eos_attr, None),
    )


def _tower_parts(model: Any) -> Optional[_TextTower]:
    """Find the text tower of an open_clip ``CLIP`` (attributes on the model) or ``CustomTextCLIP`` (``model.text``)."""
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "token_embedding") and hasattr(text, "transformer"):
        # TextTransformer: CoCa-style appended CLS and padding masks change what the pooled token sees.
        if getattr(text, "cls_emb", None) is not None or getattr(text, "use_pad_mask", False):
            return None
        return _tower_from(text, "pool_type", "eos_id")
    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final")
    if all(hasattr(model, name) for name in needed):
        # CLIP keeps the tower's attributes on the model itself, with text_-prefixed pooling settings.
        return _tower_from(model, "text_pool_type", "text_eos_id")
    return None  # e.g. HFTextEncoder towers


def _is_causal_mask(mask: Any) -> bool:
    """True if ``mask`` is the additive causal mask (0 on and below the diagonal, -inf above)."""
    import torch

    if mask is None or not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        return False
    m = mask.detach().float().cpu()
    upper = torch.triu(torch.ones_like(m, dtype=torch.bool), diagonal=1)
    return bool(torch.all(m[~upper] == 0)) and bool(torch.all(torch.isneginf(m[upper])))


def supports_truncation(loaded: Any) -> bool:
    """Whether ``encode_texts`` may run this model's text tower over the existing positions only (exact)."""
    parts = _tower_parts(loaded.model)
    if parts is None or parts.pool_type not in _TRUNCATABLE_POOLS:
        return False
    if parts.pool_type == "eos" and parts.eos_id is None:
        return False
    return _is_causal_mask(parts.attn_mask)


def _pool_index(tokens: Any, pool_type: str, eos_id: Optional[int]) -> Any:
    """Index of the pooled token per row, exactly as open_clip's ``text_global_pool`` picks it."""
    import torch

    if pool_type == "argmax":
        return tokens.argmax(dim=-1)
    if pool_type == "eos":
        return (tokens == eos_id).int().argmax(dim=-1)
    return torch.zeros(tokens.shape[0], dtype=torch.long)  # "first"


def _forward_truncated(parts: _TextTower, tokens: Any, pool_idx: Any) -> Any:
    """One batch through the tower, sliced to ``L = max(pool_idx) + 1`` positions; returns unnormalised features."""
    import torch

    length = int(pool_idx.max().item()) + 1
    tokens = tokens[:, :length]
    transformer = parts.transformer
    cast_dtype = transformer.get_cast_dtype() if hasattr(transformer, "get_cast_dtype") else parts.ln_final.weight.dtype
    x = parts.token_embedding(tokens).to(cast_dtype)
    x = x + parts.positional_embedding[:length].to(cast_dtype)
    mask = parts.attn_mask[:length, :length]
    if hasattr(transformer, "batch_first"):
        # open_clip >= 2.2x: Transformer.forward takes NLD and transposes itself when batch_first is False.
        x = transformer(x, attn_mask=mask)
    else:  # older open_clip: the transformer expects LND
        x = transformer(x.permute(1, 0, 2), attn_mask=mask).permute(1, 0, 2)
    x = parts.ln_final(x)
    pooled = x[torch.arange(x.shape[0], device=x.device), pool_idx.to(x.device)]
    if parts.projection is not None:
        if isinstance(parts.projection, torch.nn.Linear):
            pooled = parts.projection(pooled)
        else:
            pooled = pooled @ parts.projection
    return pooled


def _normalised_numpy(feats: Any) -> np.ndarray:
    import torch

    feats = torch.nn.functional.normalize(feats.float(), dim=-1)
    return feats.cpu().numpy().astype(np.float32, copy=False)


def encode_texts(
    loaded: Any,
    texts: Sequence[str],
    batch_size: int = 256,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelToken] = None,
) -> np.ndarray:
    """Encode ``texts`` to (n, d) float32 unit rows, in input order; same result as ``encode_text`` to ~1e-5.

    Raises CancelledError when ``cancel`` is set (checked between batches).
    """
    import torch

    texts = list(texts)
    n = len(texts)
    dim = int(loaded.embed_dim)
    out = np.empty((n, dim), dtype=np.float32)
    if n == 0:
        return out
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    check(cancel)
    model = loaded.model
    device = loaded.device
    truncate = supports_truncation(loaded)
    parts = _tower_parts(model) if truncate else None

    with torch.inference_mode():
        tokens = loaded.tokenizer(texts)
        if truncate:
            assert parts is not None
            pool_idx = _pool_index(tokens, parts.pool_type, parts.eos_id)
            # Sort by length so each batch is sliced to nearly its own length; stable keeps ties in input order.
            order = torch.argsort(pool_idx, stable=True)
        else:
            order = torch.arange(n)
        report(progress, 0, n, "Encoding texts")
        for start in range(0, n, batch_size):
            check(cancel)
            idx = order[start : start + batch_size]
            batch = tokens[idx].to(device)
            if truncate:
                feats = _forward_truncated(parts, batch, pool_idx[idx])
            else:
                feats = model.encode_text(batch)
            out[idx.numpy()] = _normalised_numpy(feats)
            report(progress, min(start + batch_size, n), n, "Encoding texts")
    return out
