"""The editable drum grid of the page: a Gradio 6 `gr.HTML` with its template, CSS and script.

UI only, beside app.py (the core package knows nothing of it). The component's value is::

    {"draft": {"bars", "tempo", "hits": [{"bar", "step", "drum", "velocity", "offset"}]},
     "drums": [...], "labels": [...], "title": "...",
     "locked": ["kick", ...] | None, "selected": [0-based bars] | None}

The draft is `drumgen.draft`'s JSON. `locked` and `selected` are the page's own state: the
server sends None to keep what the page has. The script renders the grid from the value, so
a click shows at once; it then sets `props.value` and calls `trigger('submit')` (an edit) and
the server answers with audio and the .mid. Locks, bar selection and the velocity of new hits
stay in the page until a button sends them.

Test hook: every cell is an element with `data-cell`, `data-bar`, `data-step` (0-based),
`data-drum` (the drum's name) and `data-on="0|1"`.
"""

from __future__ import annotations

from drumgen import draft as draft_mod
from drumgen.constants import DRUM_LABELS, DRUMS
from drumgen.grid import STOPS
from drumgen.pattern import Pattern

NEW_HIT_VELOCITIES = {"soft": 50, "normal": 90, "accent": 120}

TEMPLATE = """${(window.drumgenGrid ? window.drumgenGrid(value) :
  '<div class="dg-empty">Generate a groove to edit it here.</div>')}"""

CSS = """
.dg-empty { padding: 1.5em; color: var(--body-text-color-subdued); }
.dg-bar-tools { display: flex; gap: 1em; align-items: center; flex-wrap: wrap;
  font-size: 0.85em; margin-bottom: 0.4em; }
.dg-title { font-weight: 600; }
.dg-scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; padding-bottom: 4px; }
.dg-grid { display: grid; width: max-content; user-select: none; font-size: 11px; }
.dg-label { position: sticky; left: 0; z-index: 2; background: var(--block-background-fill);
  display: flex; align-items: center; gap: 4px; padding-right: 6px; white-space: nowrap;
  width: 104px; box-sizing: border-box; }
.dg-lock { cursor: pointer; border: 1px solid var(--border-color-primary); border-radius: 4px;
  background: none; font-size: 10px; padding: 0 3px; min-width: 34px; }
.dg-lock[aria-pressed="true"] { background: #ffd24d; border-color: #b38600; }
.dg-barsel { cursor: pointer; border: 1px solid var(--border-color-primary);
  background: none; border-radius: 4px; margin: 0 2px 2px 0; font-size: 11px; }
.dg-barsel[aria-pressed="true"] { background: #8ecbff; border-color: #1f6fb5; }
.dg-cell { position: relative; width: 22px; height: 22px; box-sizing: border-box;
  border-left: 1px solid #eee; border-bottom: 1px solid #eee; cursor: pointer;
  background: #fff; }
.dg-cell.beat { border-left-color: #bbb; }
.dg-cell.bar { border-left: 2px solid #555; }
.dg-cell.sel { background: #e8f4ff; }
.dg-row-locked .dg-cell { background-image: repeating-linear-gradient(45deg, transparent 0 4px,
  rgba(255, 210, 77, 0.25) 4px 8px); }
.dg-cell:hover { outline: 1px solid #1f6fb5; z-index: 1; }
.dg-hit { position: absolute; top: 50%; border-radius: 50%; border: 0.5px solid #000;
  transform: translate(-50%, -50%); pointer-events: none; }
"""

JS = r"""
const state = window.drumgenGridState = window.drumgenGridState ||
  {locked: [], selected: [], velocity: 'normal'};
function colour(v, STOPS) {
  const x = Math.min(Math.max((v - 1) / 126, 0), 1) * (STOPS.length - 1);
  const i = Math.min(Math.floor(x), STOPS.length - 2), f = x - i;
  return 'rgb(' + STOPS[i].map((p, k) => Math.round(p + (STOPS[i + 1][k] - p) * f)).join(',') + ')';
}
function esc(s) { return String(s).replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c])); }
window.drumgenGrid = function (value) {
  if (!value || !value.draft) {
    return '<div class="dg-empty">Generate a groove to edit it here.</div>';
  }
  const d = value.draft, steps = value.steps, drums = value.drums, labels = value.labels;
  const VELOCITY = value.velocities;
  const locked = value.locked || state.locked, selected = value.selected || state.selected;
  const msPerStep = 60000 / d.tempo / 4;
  const on = {};
  for (const h of d.hits) {
    const key = h.bar + ':' + h.step + ':' + h.drum;
    if (!on[key] || h.velocity > on[key].velocity) on[key] = h;
  }
  let out = '<div class="dg-bar-tools"><span class="dg-title">' + esc(value.title || '') +
    '</span><label>New hits <select class="dg-vel">' +
    Object.keys(VELOCITY).map(k => '<option value="' + k + '"' + (k === state.velocity ? ' selected' : '') +
      '>' + k + ' (' + VELOCITY[k] + ')</option>').join('') +
    '</select></label><span>Shift-click: accent, Alt-click: soft. Click a bar number to select it; <b>keep</b> locks a lane.</span></div>';
  out += '<div class="dg-scroll"><div class="dg-grid" style="grid-template-columns: 104px repeat(' +
    (d.bars * steps) + ', 22px)"><div class="dg-label"></div>';
  for (let b = 0; b < d.bars; b++) {
    const sel = selected.includes(b);
    out += '<div style="grid-column: span ' + steps + '"><button class="dg-barsel" data-select-bar="' + b +
      '" aria-pressed="' + sel + '">bar ' + (b + 1) + '</button></div>';
  }
  for (let r = drums.length - 1; r >= 0; r--) {
    const drum = drums[r], isLocked = locked.includes(drum);
    out += '<div class="dg-label' + (isLocked ? ' dg-row-locked' : '') + '"><button class="dg-lock" data-lock="' +
      drum + '" aria-pressed="' + isLocked + '" title="Lock ' + esc(labels[r]) + ': keep it when regenerating">' +
      (isLocked ? 'kept' : 'keep') + '</button>' + esc(labels[r]) + '</div>';
    for (let b = 0; b < d.bars; b++) {
      for (let s = 0; s < steps; s++) {
        const h = on[b + ':' + s + ':' + drum];
        const cls = 'dg-cell' + (s === 0 ? ' bar' : s % 4 === 0 ? ' beat' : '') +
          (selected.includes(b) ? ' sel' : '');
        let dot = '', tip = labels[r] + ', bar ' + (b + 1) + ' step ' + (s + 1);
        if (h) {
          const size = 4.4 + 8.6 * h.velocity / 127;
          tip += ', velocity ' + h.velocity + ', ' + (h.offset * msPerStep >= 0 ? '+' : '') +
            Math.round(h.offset * msPerStep) + ' ms';
          dot = '<span class="dg-hit" style="left:' + (50 + 100 * h.offset).toFixed(1) + '%;width:' +
            size.toFixed(1) + 'px;height:' + size.toFixed(1) + 'px;background:' + colour(h.velocity, value.stops) + '"></span>';
        }
        out += '<div class="' + cls + (isLocked ? ' locked' : '') + '" data-cell data-bar="' + b +
          '" data-step="' + s + '" data-drum="' + drum + '" data-on="' + (h ? 1 : 0) + '"' +
          (h ? ' data-velocity="' + h.velocity + '"' : '') + ' title="' + esc(tip) + '">' + dot + '</div>';
      }
    }
  }
  return out + '</div></div>';
};
function update(changes, submit) {
  props.value = Object.assign({}, props.value, changes);
  if (submit) trigger('submit');
}
element.addEventListener('click', (ev) => {
  const v = props.value;
  if (!v || !v.draft) return;
  const cell = ev.target.closest('[data-cell]');
  const lock = ev.target.closest('[data-lock]');
  const bar = ev.target.closest('[data-select-bar]');
  if (cell) {
    const b = +cell.dataset.bar, s = +cell.dataset.step, drum = cell.dataset.drum;
    const same = h => h.bar === b && h.step === s && h.drum === drum;
    let hits = v.draft.hits.filter(h => !same(h));
    if (hits.length === v.draft.hits.length) {
      const level = ev.shiftKey ? 'accent' : ev.altKey ? 'soft' : state.velocity;
      hits = hits.concat([{bar: b, step: s, drum: drum, velocity: v.velocities[level], offset: 0}]);
    }
    update({draft: Object.assign({}, v.draft, {hits: hits}), locked: state.locked,
            selected: state.selected}, true);
  } else if (lock) {
    const drum = lock.dataset.lock;
    state.locked = state.locked.includes(drum) ? state.locked.filter(x => x !== drum)
      : state.locked.concat([drum]);
    update({locked: state.locked, selected: state.selected}, false);
  } else if (bar) {
    const b = +bar.dataset.selectBar;
    state.selected = state.selected.includes(b) ? state.selected.filter(x => x !== b)
      : state.selected.concat([b]).sort((x, y) => x - y);
    update({locked: state.locked, selected: state.selected}, false);
  }
});
element.addEventListener('change', (ev) => {
  if (ev.target.classList.contains('dg-vel')) state.velocity = ev.target.value;
});
watch('value', () => {
  const v = props.value;
  if (!v || !v.draft) return;
  // a new groove from the server: keep the page's locks, drop a selection past its end
  state.selected = (v.selected || state.selected).filter(b => b < v.draft.bars);
  state.locked = v.locked || state.locked;
  if (v.locked === null || v.selected === null || v.locked === undefined) {
    update({locked: state.locked, selected: state.selected}, false);
  }
});
if (!window.drumgenSpaceKey) {
  window.drumgenSpaceKey = true;
  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    if (ev.code !== 'Space' || ev.repeat || (t && (t.isContentEditable ||
        ['INPUT', 'TEXTAREA', 'SELECT', 'BUTTON'].includes(t.tagName)))) return;
    const player = document.querySelector('#drum-audio');
    const button = player && player.querySelector('.play-pause-button');
    if (button) { ev.preventDefault(); button.click(); }
  });
}
if (props.value && props.value.draft) update({}, false);  // render with the script loaded
"""


def value(pattern: Pattern, title: str, locked: list[str] | None = None,
          selected: list[int] | None = None) -> dict:
    """The grid's value for `pattern`; None for locks and selection keeps the page's."""
    return {"draft": draft_mod.to_json(pattern), "drums": list(DRUMS),
            "labels": list(DRUM_LABELS), "title": title, "locked": locked,
            "selected": selected, "steps": pattern.steps_per_bar,
            "velocities": NEW_HIT_VELOCITIES, "stops": [list(s) for s in STOPS]}


def read(grid) -> tuple[Pattern, list[int], list[int]]:
    """(pattern, locked drum indices, selected 0-based bars) from the grid's value, checked
    like any other input: errors name the field."""
    if not isinstance(grid, dict) or "draft" not in grid:
        raise draft_mod.DraftError("draft: there is no groove on the grid yet; generate one "
                                   "first (or send {'draft': {...}})")
    pattern = draft_mod.from_json(grid["draft"])
    locked = grid.get("locked") or []
    if not isinstance(locked, list) or any(d not in DRUMS for d in locked):
        raise draft_mod.DraftError(f"locked must be a list of drum names from "
                                   f"{', '.join(DRUMS)}; got {locked!r}")
    selected = grid.get("selected") or []
    if not isinstance(selected, list) or any(
            isinstance(b, bool) or not isinstance(b, int) or not 0 <= b < pattern.bars
            for b in selected):
        raise draft_mod.DraftError(f"selected must be a list of 0-based bar numbers below "
                                   f"{pattern.bars}; got {selected!r}")
    return pattern, sorted({DRUMS.index(d) for d in locked}), sorted(set(selected))


