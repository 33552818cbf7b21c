"""The image mean mu_img used to centre image embeddings (SpLiCE's modality alignment).

As the authors do it, mu_img is the plain mean of L2-normalised image embeddings and is NOT renormalised (their
shipped means have norms 0.56-0.70). It is model-specific: a mean from another model or pretrained tag silently
biases every decomposition, so a wrong dimension is an error and results always say which mean was used, or that
none was (``ImageMean.absent()``).

Files: the authors' ``.pt`` means (a zip-format torch file holding one float tensor, saved on cuda:0) are read
with ``torch.load(weights_only=True, map_location="cpu")``, so no pickled code is ever executed; ``.npy`` files
are read with ``allow_pickle=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from splice_desktop.core.cache import atomic_save_npy, atomic_write
from splice_desktop.core.errors import CancelledError, ImageLoadError, ImageMeanError
from splice_desktop.core.progress import CancelToken, ProgressFn

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True, eq=False)
class ImageMean:
    """mu_img (d,) float32, or None when no mean is used; ``source`` says where it came from (shown in results)."""

    vector: Optional[np.ndarray]
    source: str
    count: Optional[int] = None  # number of images it was computed from, when known
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.vector is not None:
            vec = np.ascontiguousarray(self.vector, dtype=np.float32).reshape(-1)
            vec.setflags(write=False)
            object.__setattr__(self, "vector", vec)

    @property
    def present(self) -> bool:
        return self.vector is not None

    @property
    def dim(self) -> Optional[int]:
        return None if self.vector is None else int(self.vector.shape[0])

    @property
    def norm(self) -> Optional[float]:
        return None if self.vector is None else float(np.linalg.norm(self.vector))

    @classmethod
    def absent(cls) -> "ImageMean":
        """No centring: z~ = z. Results must report this, since the decomposition then differs from the paper's."""
        return cls(vector=None, source="none (image embeddings are not centred)")

    def check_dim(self, expected_dim: int) -> None:
        """Raise ImageMeanError when this mean does not fit a model with ``expected_dim``-d embeddings."""
        if self.vector is not None and self.vector.shape[0] != expected_dim:
            raise ImageMeanError(
                f"Image mean from {self.source} has dimension {self.vector.shape[0]}, but the model's embeddings "
                f"have dimension {expected_dim}. Use a mean computed with the same model (Compute mean from a folder)."
            )


def _tensor_from_torch_file(path: Path) -> np.ndarray:
    import torch

    try:
        obj: Any = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a user-facing message
        raise ImageMeanError(
            f"Could not read image mean {path.name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
            "Expected a torch file holding one float tensor (files that need pickled code are refused), or a .npy file."
        ) from None
    if isinstance(obj, dict):
        tensors = [v for v in obj.values() if isinstance(v, torch.Tensor)]
        if len(tensors) != 1:
            raise ImageMeanError(
                f"Image mean {path.name} holds a dict with {len(tensors)} tensors ({', '.join(map(str, obj))}); "
                "expected exactly one mean vector."
            )
        obj = tensors[0]
    if not isinstance(obj, torch.Tensor):
        raise ImageMeanError(f"Image mean {path.name} holds a {type(obj).__name__}, not a tensor.")
    return obj.detach().to("cpu", dtype=torch.float32).numpy()


def _array_from_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise ImageMeanError(f"Could not read image mean {path.name} as .npy: {exc}.") from None


def load_image_mean(path: str | Path, expected_dim: Optional[int] = None) -> ImageMean:
    """Load a mean from the authors' ``.pt`` or a ``.npy`` file (format detected from content, not only suffix)."""
    path = Path(path)
    if not path.is_file():
        raise ImageMeanError(f"Image mean file not found: {path}. Choose an existing .pt or .npy file.")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(_NPY_MAGIC):
        array = _array_from_npy(path)
    elif head.startswith(_ZIP_MAGIC) or path.suffix.lower() in (".pt", ".pth", ".bin"):
        array = _tensor_from_torch_file(path)
    else:
        raise ImageMeanError(
            f"{path.name} is neither a .npy file nor a torch file; an image mean must be one of those."
        )
    array = np.asarray(array)
    if array.dtype.kind not in "fiu":
        raise ImageMeanError(f"Image mean {path.name} has non-numeric dtype {array.dtype}.")
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)  # (1, d) or (d, 1) as some scripts save it
    if array.ndim != 1:
        raise ImageMeanError(f"Image mean {path.name} has shape {tuple(array.shape)}; expected a vector (d,).")
    vec = array.astype(np.float32)
    if not np.all(np.isfinite(vec)):
        raise ImageMeanError(f"Image mean {path.name} contains NaN or infinite values.")
    notes: tuple[str, ...] = ()
    norm = float(np.linalg.norm(vec))
    if norm > 1.0 + 1e-3:
        notes = (f"norm {norm:.3f} > 1: this is not a mean of unit embeddings; results may be off",)
    mean = ImageMean(vector=vec, source=str(path), notes=notes)
    if expected_dim is not None:
        mean.check_dim(expected_dim)
    return mean


class ImageMeanAccumulator:
    """Running mean of unit embeddings, so a folder of any size streams through in batches (float64 sums)."""

    def __init__(self) -> None:
        self._sum: Optional[np.ndarray] = None
        self.count = 0

    def add(self, embeddings: np.ndarray) -> None:
        batch = np.asarray(embeddings, dtype=np.float64)
        if batch.ndim == 1:
            batch = batch[None, :]
        if batch.ndim != 2 or batch.shape[0] == 0:
            return
        if self._sum is not None and batch.shape[1] != self._sum.shape[0]:
            raise ImageMeanError(
                f"Embeddings of dimension {batch.shape[1]} cannot join a mean of dimension {self._sum.shape[0]}."
            )
        norms = np.linalg.norm(batch, axis=1, keepdims=True)
        if np.any(norms == 0) or not np.all(np.isfinite(norms)):
            raise ImageMeanError("An image embedding is zero or not finite; the mean cannot be computed.")
        total = (batch / norms).sum(axis=0)  # normalise each image first, as the authors do
        self._sum = total if self._sum is None else self._sum + total
        self.count += batch.shape[0]

    def result(self, source: str = "") -> ImageMean:
        if self._sum is None or self.count == 0:
            raise ImageMeanError("No image embeddings were given, so no image mean could be computed.")
        return ImageMean(
            vector=(self._sum / self.count).astype(np.float32),
            source=source or f"computed from {self.count} images",
            count=self.count,
        )


def compute_image_mean(embeddings: np.ndarray | Iterable[np.ndarray], source: str = "") -> ImageMean:
    """mu_img = mean of L2-normalised embeddings, not renormalised (the authors' definition).

    Accepts an (n, d) array or an iterable of (b, d) batches. A mean of fewer than a few hundred diverse images
    is a poor centre; callers should say how many were used (``ImageMean.count``).
    """
    acc = ImageMeanAccumulator()
    if isinstance(embeddings, np.ndarray):
        acc.add(embeddings)
    else:
        for batch in embeddings:
            acc.add(batch)
    return acc.result(source)


def save_image_mean(mean: ImageMean, path: str | Path) -> Path:
    """Write atomically: ``.pt`` as a plain float tensor (loadable with weights_only), anything else as ``.npy``."""
    if mean.vector is None:
        raise ImageMeanError("There is no image mean to save (centring is off).")
    path = Path(path)
    if path.suffix.lower() in (".pt", ".pth"):
        import torch

        tensor = torch.from_numpy(np.array(mean.vector, dtype=np.float32))
        return atomic_write(path, lambda tmp: torch.save(tensor, str(tmp)))
    return atomic_save_npy(path, np.asarray(mean.vector, dtype=np.float32))


def compute_image_mean_from_files(
    loaded: Any,
    paths: Iterable[str | Path],
    batch_size: int = 16,
    progress: Optional[ProgressFn] = None,
    cancel: Optional[CancelToken] = None,
    use_cache: bool = True,
) -> tuple[ImageMean, list[ImageLoadError]]:
    """mu_img over image files and folders (walked recursively), streaming batches; returns (mean, skipped files).

    Unreadable files are skipped and returned. Cancelling raises CancelledError: a mean of an arbitrary prefix of
    the folder would silently bias every decomposition. The embeddings are cached like any other encode.
    """
    from splice_desktop.core.embeddings import ImageEmbeddingCache, encode_images
    from splice_desktop.core.images import collect_image_files

    inputs = [Path(p) for p in paths]
    collected = collect_image_files(inputs)
    skipped: list[ImageLoadError] = list(collected.skipped)
    acc = ImageMeanAccumulator()

    def on_batch(results: list[Any], failures: list[ImageLoadError]) -> None:
        if results:
            acc.add(np.stack([r.embedding for r in results]))

    cache = ImageEmbeddingCache.shared(loaded.key) if use_cache else None
    rep = encode_images(
        loaded, collected.files, batch_size=batch_size, cache=cache, progress=progress, cancel=cancel,
        on_batch=on_batch,
    )
    if rep.cancelled:
        raise CancelledError("Computing the image mean was cancelled; no mean was produced.")
    skipped.extend(rep.failures)
    if acc.count == 0:
        where = ", ".join(str(p) for p in inputs[:3]) + (" ..." if len(inputs) > 3 else "")
        raise ImageMeanError(
            f"No readable images in {where} ({len(skipped)} file(s) skipped); the image mean needs at least one. "
            "Choose a folder of photos (a few thousand diverse images give a good mean).",
            skipped=skipped,
        )
    label = str(inputs[0]) if len(inputs) == 1 else f"{len(inputs)} inputs"
    model = getattr(getattr(loaded, "spec", None), "label", None)
    return acc.result(f"computed from {acc.count} images in {label}" + (f" with {model}" if model else "")), skipped
