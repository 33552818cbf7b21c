"""Command-line front end over the same core as the GUI: batch decomposition, image means, cache building, info.

Exit codes: 0 when at least one image was processed (skipped files are summarised on stderr), 1 when nothing
could be processed or a user-facing error occurred (one line, never a traceback), 2 for usage errors,
130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import IO, Any, Optional, Sequence

from splice_desktop.core.errors import ImageLoadError, SpliceError

SUBCOMMANDS: tuple[str, ...] = ("decompose", "compute-mean", "build-cache", "info")
DEFAULT_LAMBDA = 0.25
DEFAULT_TOP = 10
FORMATS = ("table", "csv", "json")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A bad combination of options found after parsing; reported like argparse errors (exit 2)."""


# ----------------------------------------------------------------------------------------------- progress


class ProgressBar:
    """A small self-written progress reporter on stderr, usable as a core ``ProgressFn``.

    On a terminal it redraws one line with a bar; otherwise (logs, CI, pipes) it prints a plain line at most
    every ``interval`` seconds and at completion, so logs stay readable.
    """

    def __init__(self, label: str, stream: Optional[IO[str]] = None, enabled: bool = True,
                 interval: float = 5.0, width: int = 28) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.interval = interval
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_print = 0.0
        self._last_done = -1
        self._drawn = False
        self._start = time.monotonic()

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        finished = total > 0 and done >= total
        if self.tty:
            if not finished and now - self._last_print < 0.1:
                return
            frac = min(1.0, done / total) if total > 0 else 0.0
            filled = int(round(frac * self.width))
            bar = "#" * filled + "-" * (self.width - filled)
            line = f"\r{self.label} [{bar}] {done}/{total} {message}"[:200]
            self.stream.write(line.ljust(80))
            self._drawn = True
            if finished:
                self.stream.write("\n")
                self._drawn = False
        else:
            if done == self._last_done and not finished:
                return
            if not finished and now - self._last_print < self.interval and self._last_done >= 0:
                return
            pct = f" ({100 * done // total}%)" if total > 0 else ""
            text = f"{self.label}: {done}/{total}{pct}"
            if message:
                text += f" {message}"
            self.stream.write(text + "\n")
        self._last_print = now
        self._last_done = done
        self.stream.flush()

    def close(self) -> None:
        """End a partially drawn terminal line (e.g. after an error or cancel)."""
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _eprint(*parts: Any) -> None:
    print(*parts, file=sys.stderr)


# ----------------------------------------------------------------------------------------------- parser


def _number(text: str, kind: type, minimum: float, inclusive: bool) -> Any:
    """Parse an option value of ``kind`` and check it against its lower bound, with a message argparse prints."""
    noun = "number" if kind is float else "whole number"
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a {noun}: {text!r}") from None
    ok = value >= minimum if inclusive else value > minimum
    if not ok or value == float("inf"):
        bound = ">=" if inclusive else ">"
        finite = "finite " if kind is float else ""
        raise argparse.ArgumentTypeError(f"must be a {finite}{noun} {bound} {minimum:g} (got {text})")
    return value


def _positive_float(text: str) -> float:
    return _number(text, float, 0, inclusive=True)


def _positive_int(text: str) -> int:
    return _number(text, int, 0, inclusive=False)


def _nonneg_int(text: str) -> int:
    return _number(text, int, 0, inclusive=True)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    from splice_desktop.core.models import DEFAULT_MODEL, DEFAULT_PRETRAINED, TINY_MODEL

    g = p.add_argument_group("model")
    g.add_argument("--model", default=DEFAULT_MODEL, help=f"open_clip architecture (default {DEFAULT_MODEL})")
    g.add_argument("--pretrained", default=DEFAULT_PRETRAINED,
                   help=f"open_clip pretrained tag, read from open_clip's cache (default {DEFAULT_PRETRAINED})")
    g.add_argument("--checkpoint", metavar="FILE",
                   help="local weights file (.safetensors or torch state_dict) for --model instead of a tag")
    g.add_argument("--tiny", action="store_true",
                   help=f"use the tiny random demo model {TINY_MODEL} (no download; concepts are MEANINGLESS)")
    g.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"),
                   help="compute device (default auto: cuda > mps > cpu)")
    g.add_argument("--batch-size", type=_positive_int, default=16, help="images per encoding batch (default 16)")


def _add_vocab_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("vocabulary")
    g.add_argument("--vocab", metavar="FILE",
                   help="concept vocabulary, one concept per line (default: the built-in vocabulary)")
    g.add_argument("--vocab-size", type=_positive_int, metavar="K",
                   help="use only K concepts (the last K for --vocab-order ascending, the first K for plain)")
    g.add_argument("--vocab-order", choices=("ascending", "plain"), default="ascending",
                   help="ascending = SpLiCE convention (ascending frequency, most frequent last); plain = best first")


def build_parser() -> argparse.ArgumentParser:
    from splice_desktop import __version__

    parser = argparse.ArgumentParser(
        prog="splice-desktop",
        description="SpLiCE Desktop: sparse concept decompositions of CLIP image embeddings. "
                    "Run without a command to open the window.",
    )
    parser.add_argument("--version", action="version", version=f"splice-desktop {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("decompose", help="decompose images into sparse concept weights",
                       description="Decompose images (files or folders, walked recursively) into non-negative "
                                   "sparse weights over a concept vocabulary.")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    _add_model_options(p)
    _add_vocab_options(p)
    p.add_argument("--image-mean", metavar="FILE",
                   help="image mean for centring (.pt from the SpLiCE authors or .npy from compute-mean); "
                        "default: none, embeddings are not centred")
    p.add_argument("--lambda", dest="lam", type=_positive_float, default=DEFAULT_LAMBDA, metavar="L",
                   help=f"l1 penalty (default {DEFAULT_LAMBDA}; larger = fewer concepts)")
    p.add_argument("--top", type=_nonneg_int, default=DEFAULT_TOP, metavar="N",
                   help=f"show / export at most N concepts per image (default {DEFAULT_TOP}; 0 = all)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="output format (default: from the -o suffix, else table)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output")

    p = sub.add_parser("compute-mean", help="compute an image mean from folders of images",
                       description="Mean of the L2-normalised image embeddings (the SpLiCE centring vector) "
                                   "for one model; saved as .npy.")
    p.add_argument("inputs", nargs="+", metavar="FOLDER")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the mean (.npy)")
    _add_model_options(p)
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output")

    p = sub.add_parser("build-cache", help="pre-encode a vocabulary for a model",
                       description="Encode every concept of a vocabulary with a model and store it in the cache, "
                                   "so later decompositions start immediately.")
    _add_model_options(p)
    _add_vocab_options(p)
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output")

    sub.add_parser("info", help="devices, versions, cache folder and whether default weights are available")
    return parser


# ----------------------------------------------------------------------------------------------- helpers


def _spec_from_args(args: argparse.Namespace):
    from splice_desktop.core.models import ModelSpec

    if args.tiny:
        if args.checkpoint:
            raise UsageError("--tiny and --checkpoint cannot be combined")
        return ModelSpec.tiny()
    if args.checkpoint:
        return ModelSpec(name=args.model, pretrained=None, checkpoint=args.checkpoint)
    return ModelSpec(name=args.model, pretrained=args.pretrained, checkpoint=None)


def _load_model(args: argparse.Namespace):
    from splice_desktop.core.models import load_model

    spec = _spec_from_args(args)
    if not args.quiet:
        _eprint(f"Loading model {spec.label} ...")
        if not spec.is_tiny and not spec.checkpoint and spec.pretrained:
            found, _ = weights_status(spec.architecture, spec.pretrained)
            if not found:
                _eprint("  weights are not in the local cache: they will be downloaded if the hub is reachable")
    try:
        loaded = load_model(spec, device=args.device)
    except ValueError as exc:  # device not available
        raise UsageError(str(exc)) from None
    for warning in getattr(loaded, "warnings", []):
        _eprint(f"WARNING: {warning}")
    return loaded


def _load_vocab(args: argparse.Namespace):
    from splice_desktop.core.vocab import default_vocabulary_path, load_vocabulary

    path = Path(args.vocab) if args.vocab else default_vocabulary_path()
    vocab = load_vocabulary(path, size=args.vocab_size, order=args.vocab_order)
    if not args.quiet:
        _eprint(f"Vocabulary: {vocab.summary()}")
    return vocab


def _build_bank(args: argparse.Namespace, loaded: Any, vocab: Any):
    from splice_desktop.core.concepts import build_concept_bank

    bar = ProgressBar("Concept bank", enabled=not args.quiet)
    try:
        return build_concept_bank(loaded, vocab, progress=bar)
    finally:
        bar.close()


def _collect(inputs: Sequence[str]):
    from splice_desktop.core.images import collect_image_files

    return collect_image_files([Path(p) for p in inputs])


def _encode(args: argparse.Namespace, loaded: Any, files: list[Path]):
    from splice_desktop.core.embeddings import ImageEmbeddingCache, encode_images

    cache = ImageEmbeddingCache.shared(loaded.key)
    bar = ProgressBar("Encoding images", enabled=not args.quiet)
    try:
        return encode_images(loaded, files, batch_size=args.batch_size, cache=cache, progress=bar)  # flushes cache
    finally:
        bar.close()


def _print_skipped(skipped: Sequence[ImageLoadError]) -> None:
    if not skipped:
        return
    _eprint(f"Skipped {len(skipped)} file(s):")
    for err in skipped:
        path = getattr(err, "path", None)
        reason = getattr(err, "reason", str(err))
        _eprint(f"  {path if path is not None else '?'}: {reason}")


def _format_table(items: Sequence[tuple[Path, Any]], top: Optional[int], meaningless: bool,
                  model_label: str, mean_source: str) -> str:
    from splice_desktop.core.models import TINY_WARNING

    lines: list[str] = []
    if meaningless:
        lines.append(f"!!! {TINY_WARNING.upper()} !!!")
    lines.append(f"model: {model_label}")
    lines.append(f"image mean: {mean_source}")
    for path, dec in items:
        lines.append("")
        lines.append(f"== {path}")
        lines.append(
            f"lambda {dec.lam:.4g} (max {dec.lambda_max:.4g})  l0 {dec.l0}  cosine {dec.cosine:.4f}  "
            f"centred cosine {dec.centred_cosine:.4f}" + ("  [MEANINGLESS]" if meaningless else "")
        )
        pairs = dec.top(top)
        if not pairs:
            lines.append("  (no active concept: lambda is at or above lambda_max)")
            continue
        lines.append(f"  {'rank':>4}  {'weight':>8}  concept")
        for rank, (word, weight) in enumerate(pairs, 1):
            lines.append(f"  {rank:>4}  {weight:>8.4f}  {word}")
        if top is not None and dec.l0 > len(pairs):
            lines.append(f"  ... {dec.l0 - len(pairs)} more (use --top 0 for all)")
    return "\n".join(lines) + "\n"


def _output_format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    if args.output:
        suffix = Path(args.output).suffix.lower()
        if suffix == ".csv":
            return "csv"
        if suffix == ".json":
            return "json"
    return "table"


# ----------------------------------------------------------------------------------------------- commands


def cmd_decompose(args: argparse.Namespace) -> int:
    from splice_desktop.core.cache import atomic_write_text
    from splice_desktop.core.decompose import Decomposer
    from splice_desktop.core.export import (
        ExportMeta,
        decomposition_record,
        decomposition_rows,
        records_to_json_text,
        rows_to_csv_text,
    )
    from splice_desktop.core.image_mean import ImageMean, load_image_mean

    fmt = _output_format(args)
    top = None if args.top == 0 else args.top
    _spec_from_args(args)  # option conflicts are usage errors before any work starts
    collected = _collect(args.inputs)
    skipped: list[ImageLoadError] = list(collected.skipped)
    if not collected.files:
        _print_skipped(skipped)
        _eprint("error: no images to process in " + ", ".join(args.inputs))
        return EXIT_FAILED

    vocab = _load_vocab(args)  # cheap checks first, so a bad --vocab fails before the model loads
    loaded = _load_model(args)
    mean = load_image_mean(args.image_mean, expected_dim=loaded.embed_dim) if args.image_mean else ImageMean.absent()
    if not args.quiet:
        _eprint(f"Image mean: {mean.source}")
    bank = _build_bank(args, loaded, vocab)
    report = _encode(args, loaded, collected.files)
    skipped.extend(report.failures)

    decomposer = Decomposer(bank, mean)
    by_path = {Path(r.path): r for r in report.results}
    items: list[tuple[Path, Any]] = []
    for path in collected.files:  # input order, whatever order the encoder finished in
        result = by_path.get(Path(path))
        if result is None:
            continue
        try:
            items.append((Path(path), decomposer.decompose(result.embedding, args.lam)))
        except SpliceError as exc:  # e.g. lambda too small for this bank: skip this image, keep the rest
            skipped.append(ImageLoadError(path, str(exc)))

    meta = ExportMeta(
        model_label=loaded.spec.label,
        meaningless=bool(loaded.meaningless),
        vocab_source=vocab.source,
        vocab_size=len(vocab),
        image_mean_source=mean.source,
    ).filled()
    if items:
        if fmt == "table":
            text = _format_table(items, top, meta.meaningless, meta.model_label, meta.image_mean_source)
        elif fmt == "csv":
            text = rows_to_csv_text(r for p, d in items for r in decomposition_rows(p, d, meta, top))
        else:
            text = records_to_json_text([decomposition_record(p, d, meta, top) for p, d in items])
        if args.output:
            atomic_write_text(args.output, text)
            if not args.quiet:
                _eprint(f"Wrote {len(items)} decomposition(s) to {args.output} ({fmt})")
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    _print_skipped(skipped)
    if meta.meaningless:
        _eprint("NOTE: results come from the tiny random demo model and are meaningless.")
    if not items:
        _eprint("error: none of the images could be processed")
        return EXIT_FAILED
    if skipped:
        _eprint(f"Processed {len(items)} image(s), skipped {len(skipped)}.")
    return EXIT_OK


def cmd_compute_mean(args: argparse.Namespace) -> int:
    from splice_desktop.core.errors import ImageMeanError
    from splice_desktop.core.image_mean import compute_image_mean_from_files, save_image_mean

    _spec_from_args(args)
    collected = _collect(args.inputs)
    if not collected.files:  # say so before spending seconds on loading a model
        _print_skipped(collected.skipped)
        _eprint("error: no images to process in " + ", ".join(args.inputs))
        return EXIT_FAILED
    loaded = _load_model(args)
    bar = ProgressBar("Encoding images", enabled=not args.quiet)
    try:
        try:
            mean, skipped = compute_image_mean_from_files(loaded, args.inputs, batch_size=args.batch_size,
                                                          progress=bar)
        finally:
            bar.close()
    except ImageMeanError as exc:
        _print_skipped(exc.skipped)
        _eprint("error: none of the images could be processed; no mean written")
        return EXIT_FAILED
    _print_skipped(skipped)
    save_image_mean(mean, args.output)
    import numpy as np

    print(f"Wrote image mean of {mean.count} image(s) (dimension {mean.dim}, "
          f"norm {float(np.linalg.norm(mean.vector)):.4f}) to {args.output}")
    if (mean.count or 0) < 100:
        _eprint(f"NOTE: a mean of only {mean.count} images is a rough centre; use hundreds of diverse images.")
    if loaded.meaningless:
        _eprint("NOTE: computed with the tiny random demo model; only useful with that model.")
    return EXIT_OK


def cmd_build_cache(args: argparse.Namespace) -> int:
    vocab = _load_vocab(args)
    loaded = _load_model(args)
    start = time.monotonic()
    bank = _build_bank(args, loaded, vocab)
    elapsed = time.monotonic() - start
    print(f"Concept bank ready: {len(bank.words)} concepts x {bank.matrix.shape[1]} dims for {loaded.spec.label} "
          f"({elapsed:.1f} s); cached under {_concept_cache_dir()}")
    return EXIT_OK


def _concept_cache_dir() -> Path:
    from splice_desktop.core.cache import cache_dir

    return cache_dir("concepts")


def default_weights_status() -> tuple[bool, str]:
    """Whether the default model's weights are in open_clip's / the HF hub cache (no network access)."""
    from splice_desktop.core.models import DEFAULT_MODEL, DEFAULT_PRETRAINED

    return weights_status(DEFAULT_MODEL, DEFAULT_PRETRAINED)


def weights_status(model: str, pretrained: str) -> tuple[bool, str]:
    """Whether open_clip weights for (model, tag) are already on disk; (found, path or where we looked)."""
    try:
        from splice_desktop.core import weights
    except Exception as exc:  # noqa: BLE001 - info must never crash
        return False, f"cannot query open_clip: {exc}"
    try:
        if not weights.pretrained_cfg(model, pretrained):
            return False, "open_clip knows no such pretrained tag"
        found = weights.find_cached_weights(model, pretrained)
    except Exception as exc:  # noqa: BLE001
        return False, f"cannot inspect the caches: {exc}"
    if found is not None:
        return True, str(found)
    return False, f"not in {weights.describe_cache_locations()}"


def cmd_info(args: argparse.Namespace) -> int:
    import platform

    from splice_desktop import __version__
    from splice_desktop.core.cache import cache_root
    from splice_desktop.core.models import DEFAULT_MODEL, DEFAULT_PRETRAINED

    lines = [f"splice-desktop {__version__}", f"python {platform.python_version()} ({sys.executable})"]
    for module in ("numpy", "scipy", "torch", "open_clip", "PIL", "PySide6"):
        try:
            mod = __import__(module)
            lines.append(f"{module} {getattr(mod, '__version__', '?')}")
        except Exception:  # noqa: BLE001
            lines.append(f"{module} not installed")
    try:
        from splice_desktop.core.device import available_devices

        lines.append("devices: " + ", ".join(available_devices()))
    except Exception as exc:  # noqa: BLE001
        lines.append(f"devices: unknown ({exc})")
    lines.append(f"cache folder: {cache_root()}")
    try:
        from splice_desktop.core.vocab import default_vocabulary_path

        vp = default_vocabulary_path()
        lines.append(f"default vocabulary: {vp}" + ("" if vp.is_file() else " (MISSING)"))
    except Exception as exc:  # noqa: BLE001
        lines.append(f"default vocabulary: unknown ({exc})")
    ok, where = default_weights_status()
    status = f"available ({where})" if ok else (
        f"NOT available: {where}. Decomposition needs them (or use --checkpoint FILE, or --tiny for a demo "
        "with meaningless results); see the README for how to get weights")
    lines.append(f"default weights {DEFAULT_MODEL} / {DEFAULT_PRETRAINED}: {status}")
    print("\n".join(lines))
    return EXIT_OK


def _quiet_library_logging() -> None:
    """open_clip logs e.g. "No pretrained weights loaded" through the root logger; the CLI prints its own,
    clearer messages (errors arrive as exceptions), so library log records are not shown (unless logging was configured already)."""
    import logging

    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.CRITICAL, format="%(levelname)s: %(message)s")
    for name in ("huggingface_hub", "open_clip", "timm", "urllib3"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


COMMANDS = {
    "decompose": cmd_decompose,
    "compute-mean": cmd_compute_mean,
    "build-cache": cmd_build_cache,
    "info": cmd_info,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one subcommand; returns the exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if not hasattr(args, "quiet"):
        args.quiet = False
    _quiet_library_logging()
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        _eprint(f"splice-desktop: error: {exc}")
        return EXIT_USAGE
    except SpliceError as exc:
        _eprint(f"error: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _eprint("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `... | head`: the reader left; not an error worth a traceback
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
