"""Writing decompositions to CSV and JSON, atomically, with the metadata needed to interpret them later.

Every row / record carries the model label and a ``meaningless`` flag, so results of the tiny random demo model
can never be mistaken for real ones once they leave the app.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from splice_desktop.core.cache import atomic_write_text
from splice_desktop.core.decompose import Decomposition

CSV_COLUMNS: tuple[str, ...] = (
    "image",
    "rank",
    "concept",
    "weight",
    "lambda",
    "l0",
    "cosine",
    "centred_cosine",
    "model",
    "meaningless",
)

JSON_FORMAT_VERSION = 1


def _app_version() -> str:
    from splice_desktop import __version__

    return __version__


@dataclass(frozen=True)
class ExportMeta:
    """Context stored with exported results (what produced them)."""

    model_label: str = ""
    meaningless: bool = False
    vocab_source: str = ""
    vocab_size: int = 0
    image_mean_source: str = ""
    app_version: str = ""

    def filled(self) -> "ExportMeta":
        """A copy with the app version set when it was left empty."""
        if self.app_version:
            return self
        return ExportMeta(**{**asdict(self), "app_version": _app_version()})


Item = tuple["str | Path", Decomposition]


def decomposition_rows(image: str | Path, dec: Decomposition, meta: Optional[ExportMeta] = None,
                       top: Optional[int] = None) -> list[dict[str, Any]]:
    """One row per active concept (rank 1 = largest weight). An image with no active concept gets one row
    with rank 0 and an empty concept, so every processed image appears in the file."""
    meta = meta or ExportMeta()
    common = {
        "image": str(image),
        "lambda": float(dec.lam),
        "l0": int(dec.l0),
        "cosine": float(dec.cosine),
        "centred_cosine": float(dec.centred_cosine),
        "model": meta.model_label,
        "meaningless": bool(meta.meaningless),
    }
    pairs = dec.top(top)
    if not pairs:
        return [{**common, "rank": 0, "concept": "", "weight": 0.0}]
    return [{**common, "rank": r, "concept": word, "weight": float(w)} for r, (word, w) in enumerate(pairs, 1)]


def rows_to_csv_text(rows: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        out = dict(row)
        out["meaningless"] = "true" if row.get("meaningless") else "false"
        for key in ("weight", "lambda", "cosine", "centred_cosine"):
            out[key] = repr(float(row[key]))
        writer.writerow({k: out.get(k, "") for k in CSV_COLUMNS})
    return buffer.getvalue()


def write_decomposition_csv(path: str | Path, items: Sequence[Item], meta: Optional[ExportMeta] = None,
                            top: Optional[int] = None) -> Path:
    """CSV with the columns of CSV_COLUMNS; written atomically (UTF-8)."""
    rows: list[dict[str, Any]] = []
    for image, dec in items:
        rows.extend(decomposition_rows(image, dec, meta, top))
    return atomic_write_text(path, rows_to_csv_text(rows))


def decomposition_record(image: str | Path, dec: Decomposition, meta: Optional[ExportMeta] = None,
                         top: Optional[int] = None) -> dict[str, Any]:
    """One JSON-able dict per image: the decomposition plus the metadata that produced it."""
    meta = (meta or ExportMeta()).filled()
    record = dec.to_dict()
    if top is not None:
        record["concepts"] = record["concepts"][: max(0, int(top))]
    return {
        "image": str(image),
        **record,
        "model": meta.model_label,
        "meaningless": bool(meta.meaningless),
        "vocabulary": {"source": meta.vocab_source, "size": int(meta.vocab_size)},
        "image_mean_source": meta.image_mean_source,
        "app_version": meta.app_version,
        "format_version": JSON_FORMAT_VERSION,
    }


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def records_to_json_text(records: list[dict[str, Any]]) -> str:
    return json.dumps(_json_safe(records), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_decomposition_json(path: str | Path, items: Sequence[Item], meta: Optional[ExportMeta] = None,
                             top: Optional[int] = None) -> Path:
    """A JSON list of per-image records (see decomposition_record); written atomically (UTF-8)."""
    records = [decomposition_record(image, dec, meta, top) for image, dec in items]
    return atomic_write_text(path, records_to_json_text(records))
