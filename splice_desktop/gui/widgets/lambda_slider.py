"""The l1 (lambda) slider: live, throttled updates while dragging and one undo step per gesture.

Two outputs:
* ``valueChanging(float)`` - throttled (leading + trailing edge, ``THROTTLE_MS``): drives live re-solving. The
  final value of a burst is always emitted (trailing edge), so the last position is always solved.
* ``valueCommitted(old, new, gesture)`` - once per gesture for undo: a drag reports the value at press and at
  release; arrow/page keys pressed in quick succession share a gesture id so the undo stack merges them.

The exact float lambda is kept separately from the integer QSlider position, so ``set_value(0.25)`` reads back
0.25 rather than the nearest tick.
"""

from __future__ import annotations

import itertools
import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QSlider, QWidget

THROTTLE_MS = 40
TICKS = 1000  # slider resolution: lambda_max / 1000
KEY_GESTURE_GAP_S = 0.8  # key presses closer than this merge into one undo step

_gesture_ids = itertools.count(1)


class LambdaSlider(QWidget):
    valueChanging = Signal(float)
    valueCommitted = Signal(float, float, int)  # old, new, gesture id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._lambda_max = 1.0
        self._value = 0.0
        self._committed = 0.0  # value at the end of the last gesture
        self._press_value: float | None = None
        self._last_key_time = 0.0
        self._key_gesture = 0
        self._pending: float | None = None
        self._last_emitted: float | None = None
        self.emitted_count = 0  # number of valueChanging emissions (tests check throttling with it)

        self._title = QLabel("λ (l1)")
        self._title.setToolTip(
            "Sparsity penalty of the positive lasso. Larger = fewer concepts.\n"
            "Arrows: small steps, PageUp/PageDown: large steps."
        )
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, TICKS)
        self.slider.setSingleStep(TICKS // 100)
        self.slider.setPageStep(TICKS // 10)
        self.slider.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.slider.setToolTip(self._title.toolTip())
        self.spin = QDoubleSpinBox()
        self.spin.setDecimals(4)
        self.spin.setKeyboardTracking(False)  # only Enter / focus-out / arrows change the value
        self.spin.setRange(0.0, self._lambda_max)
        self.spin.setSingleStep(self._lambda_max / 100)
        self.spin.setToolTip("Exact lambda value")
        self._max_label = QLabel()
        self._l0_label = QLabel("l0 = –")
        self._l0_label.setMinimumWidth(70)
        self._l0_label.setToolTip("Number of active concepts at this lambda")

        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.addWidget(self._title)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.spin)
        lay.addWidget(self._max_label)
        lay.addWidget(self._l0_label)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(THROTTLE_MS)
        self._timer.timeout.connect(self._on_timer)

        self.slider.valueChanged.connect(self._on_slider_value)
        self.slider.sliderPressed.connect(self._on_pressed)
        self.slider.sliderReleased.connect(self._on_released)
        self.spin.valueChanged.connect(self._on_spin_value)
        self._update_max_label()

    # ------------------------------------------------------------------ public API
    def value(self) -> float:
        return self._value

    def lambda_max(self) -> float:
        return self._lambda_max

    def set_range(self, lambda_max: float) -> None:
        """Span [0, lambda_max] of the current image; the current value is kept (clamped for display only)."""
        lm = float(lambda_max)
        if not lm > 0:
            lm = 1e-6
        self._lambda_max = lm
        self.spin.blockSignals(True)
        self.spin.setRange(0.0, lm)
        self.spin.setSingleStep(lm / 100)
        self.spin.blockSignals(False)
        self._sync_widgets()
        self._update_max_label()

    def set_value(self, lam: float) -> None:
        """Set programmatically (undo, session restore): no signals, no undo command."""
        self._value = max(0.0, float(lam))
        self._committed = self._value
        self._last_emitted = self._value  # the caller solves this value itself
        self._pending = None
        self._timer.stop()
        self._sync_widgets()

    def set_l0(self, l0: int | None) -> None:
        self._l0_label.setText("l0 = –" if l0 is None else f"l0 = {int(l0)}")

    def l0_text(self) -> str:
        return self._l0_label.text()

    def flush(self) -> None:
        """Emit a pending throttled value now (used on release so the final position is solved at once)."""
        if self._pending is not None:
            self._timer.stop()
            self._emit_now(self._pending)

    # ------------------------------------------------------------------ internals
    def _update_max_label(self) -> None:
        self._max_label.setText(f"max {self._lambda_max:.3g}")

    def _sync_widgets(self) -> None:
        self.slider.blockSignals(True)
        self.spin.blockSignals(True)
        self.slider.setValue(self._to_tick(self._value))
        self.spin.setValue(min(self._value, self._lambda_max))
        self.slider.blockSignals(False)
        self.spin.blockSignals(False)

    def _to_tick(self, lam: float) -> int:
        return int(round(min(max(lam / self._lambda_max, 0.0), 1.0) * TICKS))

    def _from_tick(self, tick: int) -> float:
        return self._lambda_max * tick / TICKS

    def _on_slider_value(self, tick: int) -> None:
        self._set_live(self._from_tick(tick), source="slider")
        if not self.slider.isSliderDown():
            self._commit(self._key_gesture_id())

    def _on_spin_value(self, value: float) -> None:
        self._set_live(float(value), source="spin")
        self._commit(next(_gesture_ids))

    def _on_pressed(self) -> None:
        self._press_value = self._committed

    def _on_released(self) -> None:
        self.flush()
        self._commit(next(_gesture_ids))
        self._press_value = None

    def _key_gesture_id(self) -> int:
        now = time.monotonic()
        if now - self._last_key_time > KEY_GESTURE_GAP_S or not self._key_gesture:
            self._key_gesture = next(_gesture_ids)
        self._last_key_time = now
        return self._key_gesture

    def _set_live(self, lam: float, source: str) -> None:
        self._value = lam
        if source == "slider":
            self.spin.blockSignals(True)
            self.spin.setValue(lam)
            self.spin.blockSignals(False)
        else:
            self.slider.blockSignals(True)
            self.slider.setValue(self._to_tick(lam))
            self.slider.blockSignals(False)
        self._throttled(lam)

    def _throttled(self, lam: float) -> None:
        if self._timer.isActive():
            self._pending = lam  # trailing edge picks up the newest value
        else:
            self._emit_now(lam)  # leading edge: react at once
            self._timer.start()

    def _on_timer(self) -> None:
        if self._pending is not None:
            self._emit_now(self._pending)
            self._timer.start()

    def _emit_now(self, lam: float) -> None:
        self._pending = None
        if self._last_emitted == lam:
            return
        self._last_emitted = lam
        self.emitted_count += 1
        self.valueChanging.emit(lam)

    def _commit(self, gesture: int) -> None:
        old = self._committed if self._press_value is None else self._press_value
        new = self._value
        self._committed = new
        if old != new:
            self.valueCommitted.emit(old, new, gesture)
