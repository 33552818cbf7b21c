"""InterpretPanel driven like a user, offscreen, with the tiny model and a small generated pool."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from splice_desktop.gui.widgets.interpret_panel import InterpretPanel  # noqa: E402

WAIT = 60_000


@pytest.fixture
def pool_folder(tmp_path):
    from tests.conftest import make_photo_like

    folder = tmp_path / "pool"
    for i in range(6):
        make_photo_like(folder / f"p{i}.jpg", size=(80, 64), seed=i + 20)
    return folder


@pytest.fixture
def panel(qtbot, tiny_model, pool_folder, photo_factory):
    w = InterpretPanel()
    qtbot.addWidget(w)
    w.set_model(tiny_model)
    w.set_pool_folders([pool_folder])
    with qtbot.waitSignal(w.index_finished, timeout=WAIT) as blocker:
        w.build_index()
    assert blocker.args[0].added == 6 and len(w.pool) == 6
    with qtbot.waitSignal(w.forward_finished, timeout=WAIT):
        w.set_image(photo_factory("query.jpg", size=(120, 90), seed=3))
    yield w
    w.shutdown()


def _run(qtbot, panel, tab, trigger):
    with qtbot.waitSignal(panel.analysis_finished, timeout=WAIT, check_params_cb=lambda t: t == tab):
        trigger()


def test_topic_segmentation_map_and_exports(qtbot, panel, tmp_path):
    panel.tabs.setCurrentIndex(1)
    panel.topic_text.setText("a photo of a dog")
    _run(qtbot, panel, "topic", panel.run_topic)
    assert panel.topic_view.has_content()
    res = panel._results["topic"]
    assert res.values.shape == panel.session.decomposition.grid
    rgb = panel.rendered_rgb("topic")
    assert rgb is not None and rgb.shape[2] == 3
    png, table = panel.export_png("topic", tmp_path / "t.png"), panel.export_csv("topic", tmp_path / "t.csv")
    assert png.stat().st_size > 0
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == res.values.size and float(rows[0]["score"]) == pytest.approx(float(res.values[0, 0]), rel=1e-4)
    # changing head / scope answers from the cached forward pass
    for scope in range(4):
        panel.topic_scope.setCurrentIndex(scope)  # re-runs because a map is shown
        qtbot.waitUntil(lambda: not panel.is_busy(), timeout=WAIT)
    panel.head_combo.setCurrentIndex(1)
    qtbot.waitUntil(lambda: not panel.is_busy(), timeout=WAIT)
    assert panel.session.forward_count == 1


def test_contrastive_maps_symmetric(qtbot, panel, tmp_path):
    panel.contrast_text1.setText("a red car")
    panel.contrast_text2.setText("a blue sky")
    _run(qtbot, panel, "contrastive", panel.run_contrastive)
    res = panel._results["contrastive"]
    np.testing.assert_array_equal(res.first, -res.second)
    assert panel.contrast_view1.vmin == -panel.contrast_view1.vmax == -panel.contrast_view2.vmax
    assert panel.export_png("contrastive", tmp_path / "c.png").stat().st_size > 0


def test_neighbour_analyses_produce_grids_and_notes(qtbot, panel, tmp_path):
    _run(qtbot, panel, "image_nn", panel.run_image_nn)
    assert panel.image_grid.count() == 6  # default top 8, pool of 6
    assert "Searched 6 images" in panel.image_note.text()

    panel.textnn_text.setText("a photo of a dog")
    _run(qtbot, panel, "text_nn", panel.run_text_nn)
    assert panel.text_grid.count() == 3
    rows = list(csv.DictReader(panel.export_csv("text_nn", tmp_path / "n.csv").open()))
    assert [int(r["rank"]) for r in rows] == [1, 2, 3] and all(r["pool_images_searched"] == "6" for r in rows)
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)

    panel.set_custom_heads([(1, 0), (1, 2)])
    assert panel.ticked_heads() == [(1, 0), (1, 2)]
    _run(qtbot, panel, "property", panel.run_property_nn)
    assert panel.property_grid.count() == 4
    assert panel.export_png("property", tmp_path / "p.png").stat().st_size > 0
    assert panel.session.forward_count == 1


def test_textspan_describes_heads(qtbot, panel, tmp_path):
    pool_file = tmp_path / "texts.txt"
    pool_file.write_text("\n".join(["a red car", "a blue sky", "a dog", "a cat", "a beach", "the letter A"]))
    panel.set_text_pool(pool_file)
    with qtbot.waitSignal(panel.describe_finished, timeout=WAIT) as blocker:
        panel.describe_heads()
    res = blocker.args[0]
    assert len(res) == len(panel.pool.layers) * panel.pool.num_heads
    assert "TEXTSPAN on this pool" in panel.head_info.text()
    rows = list(csv.DictReader(panel.export_csv("textspan", tmp_path / "spans.csv").open()))
    assert len(rows) == sum(len(r.texts) for r in res.values())
    assert {r["text"] for r in rows} <= set(pool_file.read_text().splitlines())


def test_shutdown_leaves_no_thread_running(qtbot, tiny_model, pool_folder, photo_factory):
    from splice_desktop.gui.workers import running_threads

    w = InterpretPanel()
    qtbot.addWidget(w)
    w.set_model(tiny_model)
    w.set_pool_folders([pool_folder])
    w.build_index()
    w.set_image(photo_factory("q.jpg", seed=5))
    w.topic_text.setText("a dog")
    w.run_topic()
    w.shutdown()
    assert not w.is_busy()
    assert not [t for t in running_threads() if t.objectName().startswith("interpret")]


def test_no_model_and_no_pool_states(qtbot, tiny_model):
    w = InterpretPanel()
    qtbot.addWidget(w)
    assert "No model" in w.status.text() and not w.topic_run.isEnabled()
    w.set_model(tiny_model)
    assert "meaningless" in w.status.text()
    assert w.head_combo.count() == 4 and w.layer_combo.count() == 2
    assert not w.image_run.isEnabled() and not w.build_btn.isEnabled()  # no pool folder yet
    w.set_model(None)
    assert w.head_combo.count() == 0
    w.shutdown()


def test_pool_folders_are_remembered(qtbot, tmp_path):
    a = InterpretPanel()
    qtbot.addWidget(a)
    a.set_pool_folders([tmp_path])
    b = InterpretPanel()
    qtbot.addWidget(b)
    assert b._folders == [tmp_path]
    a.shutdown()
    b.shutdown()


def test_unreadable_image_is_reported_not_answered_from_the_old_one(qtbot, panel, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with qtbot.waitSignal(panel.analysis_failed, timeout=WAIT) as blocker:
        panel.set_image(bad)
    assert blocker.args[0] == "forward" and "bad.jpg" in panel.status.text()
    panel.topic_text.setText("a dog")
    with qtbot.waitSignal(panel.analysis_failed, timeout=WAIT) as blocker:
        panel.run_topic()
    assert blocker.args[0] == "topic" and "Select an image" in blocker.args[1]


@pytest.fixture
def labelled_model(tiny_model):
    """A small random 12-layer, 12-head ViT filed under ViT-B-32/openai, so the published hints show up."""
    import dataclasses

    import torch
    from open_clip.model import CLIP

    from splice_desktop.core.models import ModelSpec

    torch.manual_seed(0)
    model = CLIP(embed_dim=32,
                 vision_cfg={"image_size": 64, "layers": 12, "width": 96, "head_width": 8, "patch_size": 16},
                 text_cfg={"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 1}).eval()
    return dataclasses.replace(tiny_model, spec=ModelSpec("ViT-B-32", "openai"), model=model,
                               weights_fingerprint="0" * 64, meaningless=True)


def test_published_label_hints_and_property_sets(qtbot, labelled_model, pool_folder):
    from splice_desktop.core.interpret.labels import head_title, labels_for

    labels = labels_for("ViT-B-32", "openai")
    w = InterpretPanel()
    qtbot.addWidget(w)
    w.set_model(labelled_model)
    assert w.layer_combo.count() == 12 and w.current_layer() == 11
    assert [w.head_combo.itemText(h) for h in range(12)] == [head_title(11, h, labels) for h in range(12)]
    assert "?)" in w.head_combo.itemText(0)  # shown as a hint
    assert "not ground truth" in w.head_info.text()
    props = [w.property_combo.itemData(i) for i in range(w.property_combo.count())]
    assert {"photography", "pattern", "locations"} <= set(props)
    w.property_combo.setCurrentIndex(props.index("locations"))
    from splice_desktop.core.interpret.labels import properties_for

    assert set(w.ticked_heads()) == set(properties_for("ViT-B-32", "openai")["locations"])
    w.set_pool_folders([pool_folder])
    with qtbot.waitSignal(w.index_finished, timeout=WAIT):
        w.build_index()
    assert w.pool.layers == (8, 9, 10, 11)
    w.shutdown()


def test_cancel_index_build_keeps_partial_pool(qtbot, tiny_model, tmp_path):
    from tests.conftest import make_photo_like

    folder = tmp_path / "big"
    for i in range(40):
        make_photo_like(folder / f"b{i:02d}.png", size=(64, 64), seed=i, fmt="PNG")
    w = InterpretPanel()
    qtbot.addWidget(w)
    w.set_model(tiny_model)
    w.set_pool_folders([folder])
    w.build_index()
    assert w.cancel_btn.isEnabled()
    clicked = []

    def on_progress(done, total, message):  # the user presses Cancel once the first batch is indexed
        if message.startswith("Indexing") and done >= 8 and not clicked:
            clicked.append(done)
            w.cancel_btn.click()

    w._pool_job.progress.connect(on_progress)
    qtbot.waitUntil(lambda: not w.is_busy(), timeout=WAIT)
    assert clicked
    assert w.pool is not None and 0 < len(w.pool) < 40
    assert "Indexed" in w.pool_note.text()
    w.shutdown()
