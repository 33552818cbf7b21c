"""The CLI end to end with the tiny random model on generated images (one of them corrupt).

Most runs call ``cli.main`` in-process (fast); ``python -m splice_desktop`` is exercised in subprocesses too.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from splice_desktop import cli
from splice_desktop.core.models import TINY_MODEL
from tests.conftest import make_photo_like

NOUNS = ("dog cat car tree house boat bird horse river mountain road city beach flower train plane chair table "
         "book phone cup bottle street sky cloud sun snow rain forest lake bridge tower garden window door").split()
ADJECTIVES = "red blue green old new small big wooden dark bright".split()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    words = NOUNS + ADJECTIVES + [f"{a} {n}" for a in ADJECTIVES for n in NOUNS[:26]]  # 305 concepts
    (root / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    images = root / "images"
    for i in range(3):
        make_photo_like(images / f"photo{i}.jpg", size=(80, 60), seed=i)
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.png").write_bytes(b"")
    (bad / "text.jpg").write_text("hello", encoding="utf-8")
    return root


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def tiny_args(workdir: Path, *extra: str) -> list[str]:
    return ["--tiny", "--device", "cpu", "--vocab", str(workdir / "vocab.txt"), *extra]


GOOD = {f"photo{i}.jpg" for i in range(3)}


def test_decompose_table_with_one_corrupt_file(workdir: Path, capsys) -> None:
    code, out, err = run(["decompose", str(workdir / "images"), *tiny_args(workdir, "--top", "4")], capsys)
    assert code == 0, err
    assert "MEANINGLESS" in out.upper().split("\n")[0], "tiny results must be labelled on screen"
    headers = [line[3:] for line in out.splitlines() if line.startswith("== ")]
    assert {Path(h).name for h in headers} == GOOD
    assert "broken.jpg" not in out
    # each image shows its stats line and at most 4 ranked concepts
    rank_lines = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert rank_lines and all(int(parts[0]) <= 4 for parts in rank_lines)
    assert out.count("centred cosine") == 3
    assert "Skipped 1 file(s)" in err and "broken.jpg" in err
    assert "Traceback" not in err


def test_decompose_csv_file(workdir: Path, capsys) -> None:
    target = workdir / "out" / "result.csv"
    code, _, err = run(["decompose", str(workdir / "images"), *tiny_args(workdir, "-o", str(target), "--top", "0")],
                       capsys)
    assert code == 0, err
    with open(target, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {Path(r["image"]).name for r in rows} == GOOD
    assert {r["meaningless"] for r in rows} == {"true"}
    assert all(TINY_MODEL in r["model"] for r in rows)
    for name in GOOD:
        mine = [r for r in rows if Path(r["image"]).name == name]
        weights = [float(r["weight"]) for r in mine]
        assert [int(r["rank"]) for r in mine] == list(range(1, len(mine) + 1))
        assert weights == sorted(weights, reverse=True) and weights[-1] > 0
        assert {int(r["l0"]) for r in mine} == {len(mine)}  # --top 0 exports every active concept
        assert {float(r["lambda"]) for r in mine} == {0.25}


def test_decompose_json_stdout_and_top(workdir: Path, capsys) -> None:
    code, out, err = run(["decompose", str(workdir / "images" / "photo0.jpg"), str(workdir / "images" / "photo1.jpg"),
                          *tiny_args(workdir, "--format", "json", "--top", "2", "--lambda", "0.3", "-q")], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert [Path(r["image"]).name for r in data] == ["photo0.jpg", "photo1.jpg"]  # input order kept
    for record in data:
        assert record["meaningless"] is True and TINY_MODEL in record["model"]
        # --top 2 keeps exactly the two heaviest of the l0 active concepts (all of them if fewer).
        assert record["l0"] > 0
        assert len(record["concepts"]) == min(2, record["l0"])
        kept = [c["weight"] for c in record["concepts"]]
        assert kept == sorted(kept, reverse=True) and kept[-1] > 0
        assert record["lambda"] == 0.3 and 0.3 < record["lambda_max"]
        assert record["vocabulary"]["size"] == 305
        assert record["image_mean_present"] is False
        assert -1 <= record["centred_cosine"] <= 1
    assert "Encoding" not in err  # --quiet: no progress output


def test_all_bad_files_exit_non_zero_with_reasons(workdir: Path, capsys) -> None:
    code, out, err = run(["decompose", str(workdir / "bad"), *tiny_args(workdir)], capsys)
    assert code != 0
    assert "empty.png" in err and "text.jpg" in err and "Skipped 2 file(s)" in err
    assert "Traceback" not in err


def test_missing_input_exit_non_zero(workdir: Path, capsys) -> None:
    code, _, err = run(["decompose", str(workdir / "nope.jpg"), *tiny_args(workdir)], capsys)
    assert code != 0 and "nope.jpg" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["decompose"],
        ["decompose", "x.jpg", "--lambda", "-1"],
        ["decompose", "x.jpg", "--format", "xml"],
        ["decompose", "x.jpg", "--vocab-size", "0"],
        ["compute-mean", "folder"],  # -o is required
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_conflicting_model_options_exit_2(workdir: Path, capsys) -> None:
    code, _, err = run(["decompose", str(workdir / "images"), "--tiny", "--checkpoint", "w.pt"], capsys)
    assert code == 2 and "--tiny" in err


def test_missing_weights_one_line_error(workdir: Path, capsys) -> None:
    code, out, err = run(["decompose", str(workdir / "images"), "--checkpoint", str(workdir / "missing.safetensors"),
                          "--vocab", str(workdir / "vocab.txt")], capsys)
    assert code == 1
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "missing.safetensors" in errors[0] and "Traceback" not in err


def test_default_weights_unavailable_message(workdir: Path, capsys) -> None:
    """Offline here: the default model must fail with the fix in one line, never with random weights."""
    available, _ = cli.default_weights_status()
    if available:
        pytest.skip("default weights are cached on this machine")
    code, out, err = run(["decompose", str(workdir / "images" / "photo0.jpg"), "--vocab", str(workdir / "vocab.txt")],
                         capsys)
    assert code == 1 and out == ""
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert "ViT-B-32" in line and "laion2b_s34b_b79k" in line and "Traceback" not in err


def test_compute_mean_then_decompose_with_it(workdir: Path, capsys) -> None:
    from splice_desktop.core.image_mean import load_image_mean

    target = workdir / "mean.npy"
    code, out, err = run(["compute-mean", str(workdir / "images"), "-o", str(target), "--tiny", "--device", "cpu"],
                         capsys)
    assert code == 0, err
    assert "3 image(s)" in out and "broken.jpg" in err
    mean = load_image_mean(target, expected_dim=32)
    assert mean.present and 0 < mean.norm < 1  # a mean of unit vectors that are not all equal

    code, out, err = run(["decompose", str(workdir / "images" / "photo2.jpg"),
                          *tiny_args(workdir, "--image-mean", str(target), "--format", "json")], capsys)
    assert code == 0, err
    record = json.loads(out)[0]
    assert record["image_mean_present"] is True and record["image_mean_source"] == str(target)


def test_compute_mean_nothing_readable(workdir: Path, capsys) -> None:
    target = workdir / "never.npy"
    code, _, err = run(["compute-mean", str(workdir / "bad"), "-o", str(target), "--tiny"], capsys)
    assert code != 0 and not target.exists()
    # Every unreadable file is named, so the user can see why there is no mean.
    bad = sorted(p.name for p in (workdir / "bad").iterdir())
    assert bad and all(name in err for name in bad) and "no mean written" in err and "Traceback" not in err


def test_build_cache_then_decompose_does_not_reencode(workdir: Path, capsys, monkeypatch) -> None:
    from splice_desktop.core import text_encoder
    from splice_desktop.core.concepts import concept_cache_path
    from splice_desktop.core.models import ModelSpec, load_model
    from splice_desktop.core.vocab import load_vocabulary

    vocab_file = workdir / "vocab_small.txt"
    vocab_file.write_text("\n".join(NOUNS) + "\n", encoding="utf-8")
    key = load_model(ModelSpec.tiny(), device="cpu").key
    cache_file = concept_cache_path(key, load_vocabulary(vocab_file).sha256)
    assert not cache_file.exists()

    code, out, err = run(["build-cache", "--tiny", "--device", "cpu", "--vocab", str(vocab_file)], capsys)
    assert code == 0, err
    assert cache_file.is_file() and f"{len(NOUNS)} concepts" in out
    mtime = cache_file.stat().st_mtime_ns

    def no_encoding(*args, **kwargs):
        raise AssertionError("the vocabulary was encoded again")

    monkeypatch.setattr(text_encoder, "encode_texts", no_encoding)
    code, out, err = run(["decompose", str(workdir / "images" / "photo0.jpg"), "--tiny", "--device", "cpu",
                          "--vocab", str(vocab_file), "--format", "json"], capsys)
    assert code == 0, err
    assert json.loads(out)[0]["vocabulary"]["size"] == len(NOUNS)
    assert cache_file.stat().st_mtime_ns == mtime


def test_vocab_size_and_order(workdir: Path, capsys) -> None:
    code, out, err = run(["decompose", str(workdir / "images" / "photo0.jpg"),
                          *tiny_args(workdir, "--vocab-size", "20", "--vocab-order", "plain", "--format", "json",
                                     "--top", "0", "--lambda", "0.05")], capsys)
    assert code == 0, err
    record = json.loads(out)[0]
    assert record["vocabulary"]["size"] == 20
    assert {c["concept"] for c in record["concepts"]} <= set(NOUNS[:20])


def test_info(capsys) -> None:
    code, out, _ = run(["info"], capsys)
    assert code == 0
    assert f"cache folder: {os.environ['SPLICE_DESKTOP_CACHE']}" in out
    assert "devices: " in out and "cpu" in out
    available, _ = cli.default_weights_status()
    assert ("default weights ViT-B-32 / laion2b_s34b_b79k: available" in out) == available
    assert ("NOT available" in out) == (not available)


# ------------------------------------------------------------------ progress bar


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_progress_bar_on_a_terminal_redraws_one_line() -> None:
    stream = _Stream(tty=True)
    bar = cli.ProgressBar("Work", stream=stream)
    bar(0, 4)
    bar(4, 4, "done")
    text = stream.getvalue()
    assert text.startswith("\r") and "[" + "#" * bar.width + "]" in text and text.endswith("\n")
    assert text.count("\n") == 1


def test_progress_bar_in_logs_prints_lines(monkeypatch) -> None:
    stream = _Stream(tty=False)
    bar = cli.ProgressBar("Work", stream=stream, interval=3600)
    for i in range(101):
        bar(i, 100)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "Work: 0/100 (0%)" and lines[-1] == "Work: 100/100 (100%)"
    assert len(lines) == 2  # throttled: first and final line only
    silent = _Stream(tty=False)
    cli.ProgressBar("Work", stream=silent, enabled=False)(5, 10)
    assert silent.getvalue() == ""


# ------------------------------------------------------------------ python -m splice_desktop


def _python_m(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "splice_desktop", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_python_m_help() -> None:
    result = _python_m("--help")
    assert result.returncode == 0
    for command in cli.SUBCOMMANDS:
        assert command in result.stdout
    assert "PySide6" not in result.stderr


def test_python_m_decompose(workdir: Path) -> None:
    result = _python_m("decompose", str(workdir / "images"), *tiny_args(workdir, "--format", "csv"))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {Path(r["image"]).name for r in rows} == GOOD
    assert "broken.jpg" in result.stderr and "Traceback" not in result.stderr


def test_main_routes_between_gui_and_cli(monkeypatch, tmp_path: Path, capsys) -> None:
    import splice_desktop.__main__ as entry

    calls: list[list[str]] = []
    fake = types.ModuleType("splice_desktop.gui.app")
    fake.run = lambda argv: calls.append(list(argv)) or 0
    monkeypatch.setitem(sys.modules, "splice_desktop.gui.app", fake)
    image = make_photo_like(tmp_path / "x.jpg")
    assert entry.main([]) == 0
    assert entry.main(["-style", "fusion"]) == 0
    assert entry.main([str(image)]) == 0
    assert calls == [[], ["-style", "fusion"], [str(image)]]
    assert entry.main(["info"]) == 0 and len(calls) == 3
    with pytest.raises(SystemExit) as info:
        entry.main(["decompse"])  # a typo is a usage error, not a silent window
    assert info.value.code == 2 and len(calls) == 3
    capsys.readouterr()
    assert entry.wants_cli(["--version"]) and not entry.wants_cli(["-platform", "offscreen"])


# ------------------------------------------------------------------ reference regression (needs real weights)


def test_reference_image_matches_authors_readme(ref_dir: Path, capsys) -> None:
    """The authors' README example: COCO 000000308175 with open_clip ViT-B-32 / laion2b, laion top-10k, their
    COCO mean, lambda 0.25 -> motorbike .093, police .0824, britain .0814, cops .0471, ... l0 = 9, cosine 0.5363.

    Needs the pretrained weights, which are never faked: skipped when they are not in the local cache.
    """
    available, _ = cli.default_weights_status()
    if not available:
        pytest.skip("default pretrained weights are not in the local cache (offline machine)")
    splice = ref_dir / "splice"
    code, out, err = run(["decompose", str(splice / "000000308175.jpg"), "--vocab", str(splice / "vocab" / "laion.txt"),
                          "--vocab-size", "10000", "--image-mean", str(splice / "means" / "open_clip_ViT-B-32_image.pt"),
                          "--lambda", "0.25", "--format", "json", "--top", "0", "-q"], capsys)
    assert code == 0, err
    record = json.loads(out)[0]
    weights = {c["concept"]: c["weight"] for c in record["concepts"]}
    assert [c["concept"] for c in record["concepts"][:3]] == ["motorbike", "police", "britain"]
    for word, expected in {"motorbike": 0.093, "police": 0.0824, "britain": 0.0814, "cops": 0.0471}.items():
        assert weights[word] == pytest.approx(expected, abs=5e-3)
    assert 8 <= record["l0"] <= 10
    assert record["cosine"] == pytest.approx(0.5363, abs=5e-3)
    assert record["meaningless"] is False


def test_readme_documents_every_subcommand() -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    if not readme.is_file():
        pytest.skip("README.md not present")
    text = readme.read_text(encoding="utf-8")
    section = text[text.index("## Command line"):]
    for command in cli.SUBCOMMANDS:
        assert f"`{command}" in section, f"README's command-line section does not mention {command}"
