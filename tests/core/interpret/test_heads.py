"""The decomposition identity: parts sum back to the model's own normalised embedding, on stock open_clip.

Weight-independent, so random init is the right CI check; it breaks loudly if open_clip changes its blocks.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from splice_desktop.core.interpret.heads import HeadDecomposer, UnsupportedModelError  # noqa: E402


def _perturbed(name: str, seed: int):
    """Random-init model with LayerNorm weights and biases perturbed, so zero biases cannot hide a bug."""
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None).eval().float()
    with torch.no_grad():
        for param in model.visual.parameters():
            if param.dim() == 1:
                param.add_(0.1 * torch.randn_like(param))
    return model


def _reference(model, x):
    with torch.no_grad():
        return torch.nn.functional.normalize(model.encode_image(x), dim=-1).numpy()


def _check_identity(decomposer: HeadDecomposer, dec, ref: np.ndarray) -> None:
    for i in range(ref.shape[0]):
        np.testing.assert_allclose(dec.total(i), ref[i], atol=1e-5, rtol=0)
    # per layer: heads x tokens sum to that layer's attention total
    hs = dec.head_sums()
    np.testing.assert_allclose(hs.sum(axis=2), dec.layer_attn[:, list(dec.layers)], atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ViT-B-32", "ViT-B-16", "ViT-B-32-quickgelu"])
def test_identity_random_weight_models(name: str) -> None:
    model = _perturbed(name, seed=1)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    decomposer = HeadDecomposer(model)
    dec = decomposer.run(x)  # one forward each keeps the test fast
    ref = _reference(model, x)
    _check_identity(decomposer, dec, ref)
    assert dec.attn.shape == (1, 12, 12, dec.num_tokens)
    n_patches = dec.grid[0] * dec.grid[1]
    assert dec.num_tokens == n_patches + 1
    # CLS attention rows are probability distributions
    np.testing.assert_allclose(dec.attn.sum(-1), 1.0, atol=1e-5)


def test_identity_tiny_model_batch_and_token_parts(tiny_model) -> None:
    x = torch.randn(3, 3, tiny_model.image_size, tiny_model.image_size, generator=torch.Generator().manual_seed(0))
    decomposer = HeadDecomposer(tiny_model)
    dec = decomposer.run(x)
    ref = tiny_model.encode_image_tensor(x)
    _check_identity(decomposer, dec, ref)
    # per-token parts of one head sum to its token-summed part; patch scores agree with the E-dim parts
    t = np.random.default_rng(0).normal(size=tiny_model.embed_dim).astype(np.float32)
    t /= np.linalg.norm(t)
    tokens = dec.head_tokens(1, 2, index=2)
    np.testing.assert_allclose(tokens.sum(0), dec.head_sums([1])[2, 0, 2], atol=1e-6)
    scores = dec.patch_scores(t, layers=[1], heads=[2], index=2, include_cls=True)[0, 0]
    np.testing.assert_allclose(scores, tokens @ t, atol=1e-6)
    assert dec.patch_map(t, index=2).shape == dec.grid


def test_subset_of_layers_keeps_identity(tiny_model) -> None:
    x = torch.randn(2, 3, tiny_model.image_size, tiny_model.image_size, generator=torch.Generator().manual_seed(3))
    decomposer = HeadDecomposer(tiny_model, layers=[-1])
    dec = decomposer.run(x)
    assert dec.layers == (1,)
    _check_identity(decomposer, dec, tiny_model.encode_image_tensor(x))
    with pytest.raises(KeyError):
        dec.head_sums([0])


def test_layerscale_is_folded_in() -> None:
    """A config with LayerScale (ls_init_value) multiplies every part; the identity must still hold."""
    from open_clip.model import CLIP

    torch.manual_seed(4)
    model = CLIP(
        embed_dim=16,
        vision_cfg={"image_size": 32, "layers": 2, "width": 32, "head_width": 8, "patch_size": 8, "ls_init_value": 0.5},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 1},
    ).eval()
    with torch.no_grad():
        for blk in model.visual.transformer.resblocks:
            blk.ls_1.gamma.uniform_(0.2, 2.0)
            blk.ls_2.gamma.uniform_(0.2, 2.0)
    x = torch.randn(2, 3, 32, 32)
    decomposer = HeadDecomposer(model)
    _check_identity(decomposer, decomposer.run(x), _reference(model, x))


def test_hooks_are_removed_and_model_unchanged(tiny_model) -> None:
    x = torch.randn(1, 3, tiny_model.image_size, tiny_model.image_size)
    before = tiny_model.encode_image_tensor(x)
    HeadDecomposer(tiny_model).run(x)
    for module in tiny_model.model.visual.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    np.testing.assert_array_equal(tiny_model.encode_image_tensor(x), before)


def test_non_vit_is_refused() -> None:
    class Fake:
        visual = torch.nn.Linear(2, 2)

    with pytest.raises(UnsupportedModelError, match="ViT"):
        HeadDecomposer(Fake())


def test_compact_pool_record_rebuilds_head_parts(tiny_model) -> None:
    """u + 3 scalars per image (what the pool stores) rebuild the E-dim token-summed parts exactly."""
    x = torch.randn(4, 3, tiny_model.image_size, tiny_model.image_size, generator=torch.Generator().manual_seed(5))
    decomposer = HeadDecomposer(tiny_model)
    dec = decomposer.run(x)
    u, scalars = dec.head_u(), dec.pool_scalars()
    full = dec.head_sums()
    for s, layer in enumerate(dec.layers):
        for head in range(dec.num_heads):
            rebuilt = decomposer.head_outputs(u[:, s, head], scalars, layer, head)
            np.testing.assert_allclose(rebuilt, full[:, s, head], atol=1e-6)


def test_refuses_blocks_with_modified_attention() -> None:
    from open_clip.transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, width=32, layers=1, heads=4, mlp_ratio=2.0,
                            output_dim=16, block_type="custom", qk_norm=True)

    class Holder:
        visual = vit

    with pytest.raises(UnsupportedModelError, match="ln_q"):
        HeadDecomposer(Holder())


def test_other_thread_running_the_model_does_not_corrupt_the_capture(tiny_model) -> None:
    """Hooks are per module; a concurrent SpLiCE encode on another thread must not leak into our capture."""
    import threading

    stop = threading.Event()
    other = torch.randn(4, 3, tiny_model.image_size, tiny_model.image_size)

    def hammer() -> None:
        while not stop.is_set():
            tiny_model.encode_image_tensor(other)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        decomposer = HeadDecomposer(tiny_model)
        for seed in range(5):
            x = torch.randn(1, 3, tiny_model.image_size, tiny_model.image_size,
                            generator=torch.Generator().manual_seed(seed))
            dec = decomposer.run(x)
            np.testing.assert_allclose(dec.total(0), dec.embedding[0], atol=1e-5)
            assert dec.attn.shape[0] == 1
    finally:
        stop.set()
        t.join()


def test_open_clip_custom_attention_blocks_keep_identity() -> None:
    """open_clip's own Attention class (used by 'custom' blocks, and by newer open_clip everywhere)."""
    from open_clip.transformer import VisionTransformer

    torch.manual_seed(1)
    vit = VisionTransformer(image_size=32, patch_size=8, width=32, layers=2, heads=4, mlp_ratio=2.0,
                            output_dim=16, block_type="custom").eval()
    with torch.no_grad():
        for p in vit.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))

    class Holder:
        visual = vit

    x = torch.randn(2, 3, 32, 32)
    decomposer = HeadDecomposer(Holder())
    dec = decomposer.run(x)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(vit(x), dim=-1).numpy()
    _check_identity(decomposer, dec, ref)


def test_value_free_paths_match_explicit_values(tiny_model) -> None:
    """The hook keeps layer inputs x, not v; u, per-patch dots and token parts formed from x equal those from v."""
    from splice_desktop.core.interpret.heads import HeadDecomposition

    x = torch.randn(2, 3, tiny_model.image_size, tiny_model.image_size, generator=torch.Generator().manual_seed(7))
    dec = HeadDecomposer(tiny_model).run(x)
    explicit = HeadDecomposition(
        embedding=dec.embedding, layers=dec.layers, num_layers=dec.num_layers, attn=dec.attn, Q=dec._Q,
        mlp=dec.mlp, embed_term=dec.embed_term, layer_attn=dec.layer_attn, kappa=dec.kappa, scale=dec.scale,
        grid=dec.grid, mu=dec.mu, ynorm=dec.ynorm, values=dec.values,
    )
    t = np.random.default_rng(1).normal(size=tiny_model.embed_dim).astype(np.float32)
    np.testing.assert_allclose(dec.head_u(), explicit.head_u(), atol=1e-5)
    np.testing.assert_allclose(dec.patch_scores(t, index=1), explicit.patch_scores(t, index=1), atol=1e-6)
    np.testing.assert_allclose(dec.head_tokens(0, 3, 1), explicit.head_tokens(0, 3, 1), atol=1e-6)
    assert dec.values.shape == (2, 2, dec.num_tokens, dec.num_heads, 16)
