"""Model loading: the tiny demo model, local checkpoints (safetensors / weights_only torch), hub tags from cache.

No pretrained weights exist on this machine, so hub loading is tested through the cache lookup and the offline
error path; nothing here pretends to have real weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from splice_desktop.core import weights as weights_cache
from splice_desktop.core.errors import WeightsUnavailableError
from splice_desktop.core.models import TINY_MODEL, ModelSpec, load_model


class Evil:
    """Any custom class: loading a file that contains it needs arbitrary pickled code."""


def _embed(loaded, seed: int = 0) -> np.ndarray:
    import torch

    gen = torch.Generator().manual_seed(seed)
    batch = torch.rand(2, 3, loaded.image_size, loaded.image_size, generator=gen)
    return loaded.encode_image_tensor(batch)


def test_openai_tag_uses_quickgelu_config() -> None:
    assert ModelSpec("ViT-B-32", "openai").architecture == "ViT-B-32-quickgelu"
    assert ModelSpec("ViT-B-32-quickgelu", "openai").architecture == "ViT-B-32-quickgelu"
    assert ModelSpec("ViT-B-32", "laion2b_s34b_b79k").architecture == "ViT-B-32"


def test_tiny_model_is_deterministic_and_labelled_meaningless(tiny_model) -> None:
    again = load_model(ModelSpec.tiny(), device="cpu")
    assert tiny_model.meaningless and again.meaningless
    assert "meaningless" in tiny_model.spec.label
    assert tiny_model.key == again.key
    z1, z2 = _embed(tiny_model), _embed(again)
    assert z1.dtype == np.float32 and z1.shape == (2, tiny_model.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(z1, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(z1, z2, atol=1e-6)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_local_checkpoint_round_trip(tmp_path: Path, tiny_model, suffix: str) -> None:
    import torch

    state = {k: v.detach().clone() * 1.01 for k, v in tiny_model.model.state_dict().items()}
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, str(path))
    loaded = load_model(ModelSpec(TINY_MODEL, None, str(path)), device="cpu")
    assert not loaded.meaningless, "a user's own checkpoint is not the random demo model"
    assert loaded.key != tiny_model.key, "cache keys must change with the weights"
    expected = tiny_model.model.__class__  # same architecture
    assert isinstance(loaded.model, expected)
    got = loaded.model.state_dict()
    for k, v in state.items():
        torch.testing.assert_close(got[k], v)


def test_checkpoint_for_wrong_architecture_says_so(tmp_path: Path) -> None:
    from safetensors.torch import save_file
    import torch

    path = tmp_path / "other.safetensors"
    save_file({"not.a.clip.key": torch.zeros(3)}, str(path))
    with pytest.raises(WeightsUnavailableError, match="does not fit architecture"):
        load_model(ModelSpec(TINY_MODEL, None, str(path)), device="cpu")


def test_missing_and_pickled_checkpoints_are_refused(tmp_path: Path) -> None:
    import torch

    with pytest.raises(WeightsUnavailableError, match="not found"):
        load_model(ModelSpec(TINY_MODEL, None, str(tmp_path / "nope.pt")), device="cpu")

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, str(path))
    with pytest.raises(WeightsUnavailableError, match="pickled code"):
        load_model(ModelSpec(TINY_MODEL, None, str(path)), device="cpu")


def _fake_hf_cache(root: Path, repo_id: str, filename: str, payload: bytes = b"weights") -> Path:
    """The on-disk layout huggingface_hub uses: models--org--name/{refs/main, snapshots/<rev>/file}."""
    folder = root / ("models--" + repo_id.replace("/", "--"))
    rev = "0123456789abcdef0123456789abcdef01234567"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(rev)
    snap = folder / "snapshots" / rev
    snap.mkdir(parents=True)
    (snap / filename).write_bytes(payload)
    return snap / filename


def test_cached_hub_weights_are_found_and_loaded_by_path_without_network(tmp_path: Path, monkeypatch) -> None:
    import open_clip

    cfg = weights_cache.pretrained_cfg("ViT-B-32", "laion2b_s34b_b79k")
    repo_id = cfg["hf_hub"].rstrip("/")
    assert weights_cache.find_cached_weights("ViT-B-32", "laion2b_s34b_b79k", str(tmp_path)) is None
    target = _fake_hf_cache(tmp_path, repo_id, "open_clip_model.safetensors")
    assert weights_cache.find_cached_weights("ViT-B-32", "laion2b_s34b_b79k", str(tmp_path)) == target

    calls: list[dict] = []

    class Stop(Exception):
        pass

    def fake_create(name, pretrained=None, **kwargs):
        calls.append({"name": name, "pretrained": pretrained, **kwargs})
        raise Stop("stop before building a 350 MB model")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    monkeypatch.setattr(weights_cache, "hub_reachable", lambda timeout=1.5: pytest.fail("network was consulted"))
    with pytest.raises(WeightsUnavailableError):
        load_model(ModelSpec("ViT-B-32", "laion2b_s34b_b79k"), device="cpu", cache_dir=str(tmp_path))
    assert calls and calls[0]["pretrained"] == str(target)
    assert calls[0]["image_mean"] == tuple(cfg["mean"])


def test_is_hub_file_accepts_exactly_the_files_the_hub_would_give() -> None:
    """Files found in the hub cache load by path, including the .safetensors twin of a named .bin; OpenAI's URL
    downloads do not."""
    repo = {"hf_hub": "org/repo/"}
    named = {"hf_hub": "org/repo/weights.bin"}
    assert weights_cache.is_hub_file(repo, Path("/c/open_clip_model.safetensors"))
    assert weights_cache.is_hub_file(repo, Path("/c/open_clip_pytorch_model.bin"))
    assert weights_cache.is_hub_file(named, Path("/c/weights.bin"))
    assert weights_cache.is_hub_file(named, Path("/c/weights.safetensors"))
    assert not weights_cache.is_hub_file(named, Path("/c/open_clip_model.safetensors"))
    assert not weights_cache.is_hub_file({"url": "https://x/ViT-B-32.pt"}, Path("/root/.cache/clip/ViT-B-32.pt"))


def test_offline_without_cache_fails_fast_with_a_fix(tmp_path: Path, monkeypatch) -> None:
    import open_clip

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(open_clip, "create_model_and_transforms",
                        lambda *a, **k: pytest.fail("must not try to download when offline"))
    with pytest.raises(WeightsUnavailableError) as info:
        load_model(ModelSpec("ViT-B-32", "laion2b_s34b_b79k"), device="cpu", cache_dir=str(tmp_path))
    message = str(info.value)
    assert "not in the local cache" in message and "local checkpoint" in message
    assert weights_cache.hub_reachable() is False


def test_unknown_tag_and_architecture_are_named(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="no pretrained tag 'no-such-tag'.*laion2b"):
        load_model(ModelSpec("ViT-B-32", "no-such-tag"), device="cpu", cache_dir=str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match="Unknown open_clip architecture"):
        load_model(ModelSpec("ViT-Nope-1", "x"), device="cpu", cache_dir=str(tmp_path))
