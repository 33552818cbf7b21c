"""The truncated causal text encoder must give stock ``encode_text`` embeddings, in input order, for any model shape."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest

from splice_desktop.core.errors import CancelledError
from splice_desktop.core.progress import CancelToken
from splice_desktop.core.text_encoder import encode_texts, supports_truncation

# Mixed token lengths: single words, phrases, an empty string, and one longer than the 77-token context.
TEXTS = [
    "dog",
    "a photo of a red sports car",
    "ice cream",
    "",
    "x",
    "traffic light",
    "the quick brown fox jumps over the lazy dog " * 10,
    "a very small grey kitten sleeping on a sofa",
    "sky",
    "hot air balloon",
]


def _stock(loaded, texts) -> np.ndarray:
    import torch

    with torch.inference_mode():
        feats = loaded.model.encode_text(loaded.tokenizer(texts).to(loaded.device))
        return torch.nn.functional.normalize(feats.float(), dim=-1).numpy()


def _with_model(loaded, model):
    return replace(loaded, model=model)


def _seq_lengths_seen(transformer):
    """Record the sequence length of every input the transformer receives (NLD input)."""
    seen: list[int] = []
    handle = transformer.register_forward_pre_hook(lambda _m, args, kwargs=None: seen.append(args[0].shape[1]))
    return seen, handle


@pytest.fixture(scope="module")
def vit_b32(tiny_model):
    """Random-init ViT-B-32 (no weights needed: equality with encode_text is architecture-level)."""
    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    return replace(
        tiny_model, model=model, tokenizer=open_clip.get_tokenizer("ViT-B-32"), embed_dim=512, image_size=224
    )


def test_tiny_model_matches_stock_encode_text(tiny_model) -> None:
    assert supports_truncation(tiny_model)
    seen, handle = _seq_lengths_seen(tiny_model.model.transformer)
    try:
        got = encode_texts(tiny_model, TEXTS, batch_size=3)
    finally:
        handle.remove()
    want = _stock(tiny_model, TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), tiny_model.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.abs(got - want).max() < 1e-5
    # The trick was really used: short batches ran over far fewer than 77 positions.
    assert min(seen) <= 4 and max(seen) == 77


def test_vit_b32_matches_stock_encode_text(vit_b32) -> None:
    assert supports_truncation(vit_b32)
    got = encode_texts(vit_b32, TEXTS, batch_size=4)
    want = _stock(vit_b32, TEXTS)
    assert np.abs(got - want).max() < 1e-5


def test_order_is_input_order_not_length_order(tiny_model) -> None:
    single = np.stack([encode_texts(tiny_model, [t])[0] for t in TEXTS])
    batched = encode_texts(tiny_model, TEXTS, batch_size=4)
    assert np.abs(single - batched).max() < 1e-5
    # Distinct texts give distinct rows, so a permutation would be caught above.
    assert np.abs(batched[0] - batched[1]).max() > 1e-3


def test_custom_text_clip_tower(tiny_model) -> None:
    import open_clip
    import torch

    from splice_desktop.core.models import TINY_CONFIG

    torch.manual_seed(1)
    model = open_clip.model.CustomTextCLIP(
        TINY_CONFIG["embed_dim"], TINY_CONFIG["vision_cfg"], TINY_CONFIG["text_cfg"]
    ).eval()
    loaded = _with_model(tiny_model, model)
    assert supports_truncation(loaded)
    assert np.abs(encode_texts(loaded, TEXTS, batch_size=4) - _stock(loaded, TEXTS)).max() < 1e-5


def test_sequence_first_transformer(tiny_model) -> None:
    model = copy.deepcopy(tiny_model.model)
    model.transformer.batch_first = False
    for block in model.transformer.resblocks:
        block.attn.batch_first = False
    loaded = _with_model(tiny_model, model)
    assert np.abs(encode_texts(loaded, TEXTS, batch_size=4) - _stock(loaded, TEXTS)).max() < 1e-5


def test_eos_pooling(tiny_model) -> None:
    model = copy.deepcopy(tiny_model.model)
    model.text_pool_type = "eos"
    model.text_eos_id = 49407  # CLIP tokenizer's end-of-text id
    loaded = _with_model(tiny_model, model)
    assert supports_truncation(loaded)
    assert np.abs(encode_texts(loaded, TEXTS, batch_size=4) - _stock(loaded, TEXTS)).max() < 1e-5


@pytest.mark.parametrize("case", ["bidirectional", "last_pool"])
def test_non_causal_towers_fall_back_to_stock(tiny_model, case: str) -> None:
    import open_clip
    import torch

    from splice_desktop.core.models import TINY_CONFIG

    if case == "bidirectional":
        torch.manual_seed(2)
        text_cfg = dict(TINY_CONFIG["text_cfg"], no_causal_mask=True)
        model = open_clip.model.CustomTextCLIP(TINY_CONFIG["embed_dim"], TINY_CONFIG["vision_cfg"], text_cfg).eval()
    else:
        model = copy.deepcopy(tiny_model.model)
        model.text_pool_type = "last"
    loaded = _with_model(tiny_model, model)
    assert not supports_truncation(loaded)
    assert np.abs(encode_texts(loaded, TEXTS, batch_size=4) - _stock(loaded, TEXTS)).max() < 1e-6


def test_progress_reports_every_batch(tiny_model) -> None:
    calls: list[tuple[int, int]] = []
    encode_texts(tiny_model, TEXTS, batch_size=3, progress=lambda d, t, m: calls.append((d, t)))
    assert calls[0] == (0, len(TEXTS)) and calls[-1] == (len(TEXTS), len(TEXTS))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) == 1 + -(-len(TEXTS) // 3)


def test_cancel_stops_between_batches(tiny_model) -> None:
    token = CancelToken()
    calls: list[int] = []

    def progress(done: int, total: int, message: str) -> None:
        calls.append(done)
        if done >= 3:
            token.cancel()

    with pytest.raises(CancelledError):
        encode_texts(tiny_model, TEXTS, batch_size=3, progress=progress, cancel=token)
    assert calls == [0, 3]


def test_empty_input(tiny_model) -> None:
    out = encode_texts(tiny_model, [])
    assert out.shape == (0, tiny_model.embed_dim) and out.dtype == np.float32
