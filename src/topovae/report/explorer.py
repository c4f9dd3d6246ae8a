"""Interactive parts of the report: the capsule explorer and the topographic-map explorer.

Both are HTML fragments with everything precomputed and embedded: images travel as PNG sprites
in ``data:`` URIs (one strip per test sequence), numbers as a JSON block, and a few lines of
plain JavaScript draw the frame chosen with a real ``<input type="range">`` onto canvases. No
external resource, no framework: the report stays one file that works from ``file://``.

* :func:`capsule_explorer_data` / :func:`capsule_explorer_html`: for each test sequence and
  each ``k = 0..S-1``, the true frame ``x_k``, the decode of frame 0's code rolled by ``k``
  (frame 0 encoded alone, and from its sequence), and heat maps of the rolled code of frame 0
  and of the code of frame ``k`` (capsules as rows, units as columns: a roll moves colour
  sideways).
* :func:`torus_explorer_data` / :func:`torus_explorer_html`: the 2-D map of a torus model's
  units coloured by preferred class; hovering (or focusing) a unit shows its most activating
  test images and its class profile.

One module (about 430 lines, most of them the two explorers' embedded CSS and JavaScript): both
share the sprite and JSON embedding and the page style, and each half reads alone.

Kept as one module (about 440 lines): each explorer's data builder and the JavaScript that reads
it are two halves of one format, and the two explorers share the sprite and JSON helpers.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.image  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import colormaps  # noqa: E402
from torch.nn import functional as F  # noqa: E402

__all__ = ["CapsuleExplorerData", "capsule_explorer_data", "capsule_explorer_html",
           "TorusExplorerData", "torus_explorer_data", "torus_explorer_html", "png_data_uri",
           "CLASS_COLOURS"]

#: matplotlib's tab10, the colours of the class-selectivity figure
CLASS_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"]


def png_data_uri(array: np.ndarray) -> str:
    """``data:image/png;base64,...`` of an ``(H, W)`` grey or ``(H, W, 3)`` RGB array in [0, 1]."""
    array = np.clip(np.asarray(array, dtype=np.float64), 0.0, 1.0)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"array must be (H, W) or (H, W, 3), got {array.shape}")
    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, (array * 255).round().astype(np.uint8), format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _rgb_frames(frames: np.ndarray) -> np.ndarray:
    """``(..., C, H, W)`` in [0, 1] -> ``(..., H, W, 3)`` (grey repeated; first 3 channels)."""
    if frames.shape[-3] == 1:
        frames = np.repeat(frames, 3, axis=-3)
    return np.moveaxis(frames[..., :3, :, :], -3, -1)


def _strip(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of ``(K, H, W, 3)`` tiles -> one ``(len(rows) * H, K * W, 3)`` sprite, no padding."""
    return np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)


def _json_script(element_id: str, data: Any) -> str:
    text = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


# -- capsule explorer -----------------------------------------------------------------------------
@dataclass
class CapsuleExplorerData:
    """Everything the capsule explorer shows, as arrays (``N`` sequences of ``S`` frames)."""

    truth: np.ndarray  # (N, S, C, H, W)
    rolled: np.ndarray  # (N, S, C, H, W): decode(Roll_k t_0), t_0 from frame 0 alone
    rolled_context: np.ndarray  # (N, S, C, H, W): the same, t_0 from the whole sequence
    rolled_codes: np.ndarray  # (N, S, n_caps, cap_dim): Roll_k t_0 (frame 0 alone)
    frame_codes: np.ndarray  # (N, S, n_caps, cap_dim): t_k from the sequence
    nll_roll: np.ndarray  # (N, S): NLL of x_k under decode(Roll_k t_0), nats
    nll_static: np.ndarray  # (N, S): NLL of x_k under decode(t_0) (no change), nats


def capsule_explorer_data(model: Any, x: torch.Tensor) -> CapsuleExplorerData:
    """Precompute the explorer for sequences ``x (N, S, C, H, W)`` of a capsule model.

    ``model`` needs ``latent_codes`` and ``decode`` (:class:`topovae.metrics.roll.CapsuleModel`).
    The roll is ``torch.roll(t_0, k, dims=-1)``, the direction used by every measurement.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 5 or x.shape[1] < 2:
        raise ValueError("x must be (N, S, C, H, W) sequences with S >= 2")
    n_frames = x.shape[1]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            alone = model.latent_codes(x[:, :1].expand_as(x))[:, 0]
            frame_codes = model.latent_codes(x)
            context = frame_codes[:, 0]
            shifts = range(n_frames)
            rolled_codes = torch.stack([torch.roll(alone, k, dims=-1) for k in shifts], 1)
            rolled_ctx = torch.stack([torch.roll(context, k, dims=-1) for k in shifts], 1)
            logits = model.decode(rolled_codes)
            logits_ctx = model.decode(rolled_ctx)
            static = model.decode(alone).unsqueeze(1).expand_as(logits)
            nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
            nll_static = F.binary_cross_entropy_with_logits(static, x, reduction="none")
    finally:
        model.train(was_training)

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    return CapsuleExplorerData(
        truth=arr(x), rolled=arr(torch.sigmoid(logits)), rolled_context=arr(
            torch.sigmoid(logits_ctx)), rolled_codes=arr(rolled_codes),
        frame_codes=arr(frame_codes), nll_roll=arr(nll.flatten(2).sum(-1)),
        nll_static=arr(nll_static.flatten(2).sum(-1)))


def _standardise_capsules(*codes: np.ndarray) -> list[np.ndarray]:
    """Each capsule of ``(S, n_caps, cap_dim)`` codes centred and scaled by its mean and standard
    deviation over all given arrays' frames and units: the pattern inside a capsule, which a
    roll moves, stays visible even when capsules differ much in level."""
    stacked = np.concatenate(codes)
    mean = stacked.mean(axis=(0, 2), keepdims=True)
    std = stacked.std(axis=(0, 2), keepdims=True)
    std = np.where(std > 1e-12, std, 1.0)
    return [(c - mean) / std for c in codes]


def _heat(codes: np.ndarray, span: float = 2.5) -> np.ndarray:
    """Standardised codes -> viridis RGB (``-span`` to ``span`` standard deviations)."""
    scaled = (codes + span) / (2 * span)
    return colormaps["viridis"](np.clip(scaled, 0.0, 1.0))[..., :3]


def capsule_explorer_html(data: CapsuleExplorerData, *, sequence_labels: list[str] | None = None,
                          scale: int = 0) -> str:
    """The explorer as an HTML fragment (markup, embedded sprites, data and its script)."""
    n, s = data.truth.shape[:2]
    h, w = data.truth.shape[-2:]
    caps, units = data.rolled_codes.shape[-2:]
    scale = scale or max(2, round(128 / max(h, w)))  # frames drawn about 128 px wide
    labels = sequence_labels or [f"test sequence {i + 1}" for i in range(n)]
    if len(labels) != n:
        raise ValueError(f"sequence_labels must have {n} entries, got {len(labels)}")
    heat_scale = max(2, round(h * scale / max(caps, units)))
    images, heats, sequences = [], [], []
    for i in range(n):
        sprite = _strip([_rgb_frames(data.truth[i]), _rgb_frames(data.rolled[i]),
                         _rgb_frames(data.rolled_context[i])])
        (rolled,) = _standardise_capsules(data.rolled_codes[i])
        (frame,) = _standardise_capsules(data.frame_codes[i])
        heat = _strip([_heat(rolled), _heat(frame)])
        hidden = "" if i == 0 else " hidden"
        images.append(f'<img class="cx-sprite" data-seq="{i}" src="{png_data_uri(sprite)}" '
                      f'alt="{html.escape(labels[i])}: true frames, rolled decodes of frame 0 '
                      f'alone and from its sequence"{hidden}>')
        heats.append(f'<img class="cx-heat" data-seq="{i}" src="{png_data_uri(heat)}" '
                     f'alt="capsule activations of {html.escape(labels[i])}" hidden>')
        sequences.append({"label": labels[i],
                          "nll": [round(float(v), 1) for v in data.nll_roll[i]],
                          "static": [round(float(v), 1) for v in data.nll_static[i]]})
    config = {"S": s, "H": h, "W": w, "caps": caps, "units": units, "sequences": sequences}
    options = "".join(f'<option value="{i}">{html.escape(label)}</option>'
                      for i, label in enumerate(labels))
    big_w, big_h = w * scale, h * scale

    def panel(canvas_id: str, cw: int, ch: int, caption: str) -> str:
        return (f'<figure class="cx-panel"><canvas id="{canvas_id}" width="{cw}" height="{ch}">'
                f"</canvas><figcaption>{caption}</figcaption></figure>")

    return f"""
<div class="explorer" id="cx-explorer">
<div class="cx-controls">
<label for="cx-seq">Sequence</label> <select id="cx-seq">{options}</select>
<label for="cx-k">roll k</label>
<input type="range" id="cx-k" min="0" max="{s - 1}" step="1" value="0"
 aria-describedby="cx-readout">
<output id="cx-kval" for="cx-k">k = 0</output>
<button type="button" id="cx-play" aria-pressed="false">play</button>
</div>
<div class="cx-panels">
{panel("cx-true", big_w, big_h, "true frame x<sub>k</sub>")}
{panel("cx-alone", big_w, big_h, "decode(Roll<sub>k</sub> t<sub>0</sub>),<br>frame 0 alone")}
{panel("cx-context", big_w, big_h,
       "decode(Roll<sub>k</sub> t<sub>0</sub>),<br>t<sub>0</sub> from its sequence")}
{panel("cx-heat-roll", units * heat_scale, caps * heat_scale,
       "Roll<sub>k</sub> t<sub>0</sub> (frame 0 alone):<br>capsules × units")}
{panel("cx-heat-frame", units * heat_scale, caps * heat_scale,
       "t<sub>k</sub>, code of frame k<br>(from its sequence)")}
</div>
<p id="cx-readout" class="cx-readout" aria-live="polite"></p>
<div class="cx-strip" style="width:{min(1000, s * w * 3)}px">{"".join(images)}
<div class="cx-marker" id="cx-marker"></div></div>
<p class="caption">The whole sequence: true frames (top row), rolled decodes of frame 0 alone
(middle), from its sequence (bottom); the frame shown above is outlined. Drag the slider or use
the arrow keys. Heat maps: one row per capsule, one column per unit; in each map every capsule
is centred and scaled by its own mean and standard deviation over the sequence (viridis, -2.5 to
2.5 standard deviations), so the pattern a roll moves sideways stays visible.</p>
<div hidden>{"".join(heats)}</div>
{_json_script("cx-data", config)}
<script>{_CAPSULE_JS}</script>
</div>"""


_CAPSULE_JS = r"""
(function () {
  var cfg = JSON.parse(document.getElementById('cx-data').textContent);
  var slider = document.getElementById('cx-k'), select = document.getElementById('cx-seq');
  var out = document.getElementById('cx-kval'), readout = document.getElementById('cx-readout');
  var marker = document.getElementById('cx-marker'), play = document.getElementById('cx-play');
  var sprites = document.querySelectorAll('img.cx-sprite');
  var heats = document.querySelectorAll('img.cx-heat');
  var timer = null;
  function tile(id, img, row, tw, th, k) {
    var canvas = document.getElementById(id), ctx = canvas.getContext('2d');
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    ctx.drawImage(img, k * tw, row * th, tw, th, 0, 0, canvas.width, canvas.height);
  }
  function draw() {
    var i = parseInt(select.value, 10), k = parseInt(slider.value, 10);
    var img = sprites[i], heat = heats[i], seq = cfg.sequences[i];
    for (var j = 0; j < sprites.length; j++) { sprites[j].hidden = (j !== i); }
    tile('cx-true', img, 0, cfg.W, cfg.H, k);
    tile('cx-alone', img, 1, cfg.W, cfg.H, k);
    tile('cx-context', img, 2, cfg.W, cfg.H, k);
    tile('cx-heat-roll', heat, 0, cfg.units, cfg.caps, k);
    tile('cx-heat-frame', heat, 1, cfg.units, cfg.caps, k);
    out.textContent = 'k = ' + k;
    slider.setAttribute('aria-valuetext', 'roll by ' + k + ' of ' + (cfg.S - 1));
    marker.style.left = (100 * k / cfg.S) + '%';
    marker.style.width = (100 / cfg.S) + '%';
    readout.textContent = 'Frame ' + k + ' of ' + seq.label + ': the rolled decode scores ' +
      seq.nll[k].toFixed(1) + ' nats against ' + seq.static[k].toFixed(1) +
      ' for predicting no change (lower is better).';
  }
  function stop() {
    if (timer !== null) { clearInterval(timer); timer = null; }
    play.textContent = 'play'; play.setAttribute('aria-pressed', 'false');
  }
  slider.addEventListener('input', draw);
  select.addEventListener('change', draw);
  play.addEventListener('click', function () {
    if (timer !== null) { stop(); return; }
    play.textContent = 'pause'; play.setAttribute('aria-pressed', 'true');
    timer = setInterval(function () {
      slider.value = (parseInt(slider.value, 10) + 1) % cfg.S; draw();
    }, 400);
  });
  function ready(img) {
    return img.complete ? Promise.resolve() : new Promise(function (resolve) {
      img.addEventListener('load', resolve); img.addEventListener('error', resolve);
    });
  }
  var all = Array.prototype.slice.call(sprites).concat(Array.prototype.slice.call(heats));
  Promise.all(all.map(ready)).then(draw);
})();
"""


# -- topographic-map explorer ---------------------------------------------------------------------
@dataclass
class TorusExplorerData:
    """The map of a torus model: ``rows x cols`` units, their top images and class profiles."""

    rows: int
    cols: int
    classes: list[str]
    preferred: np.ndarray  # (rows * cols,) index into classes
    profiles: np.ndarray  # (n_classes, rows * cols) mean activation per class
    top: np.ndarray  # (rows * cols, k) indices into images
    images: np.ndarray  # (M, C, H, W) the images the top lists refer to


def torus_explorer_data(images: Any, codes: Any, labels: Any, grid: tuple[int, int], *,
                        k: int = 6) -> TorusExplorerData:
    """Preferred class, class profile and ``k`` most activating images of every unit."""
    from topovae.metrics.topographic_map import class_profiles

    imgs = np.asarray(images.cpu() if hasattr(images, "cpu") else images, dtype=np.float64)
    z = np.asarray(codes.cpu() if hasattr(codes, "cpu") else codes, dtype=np.float64)
    rows, cols = int(grid[0]), int(grid[1])
    if imgs.ndim != 4 or z.ndim != 2 or len(imgs) != len(z) or z.shape[1] != rows * cols:
        raise ValueError(f"images (N, C, H, W), codes (N, {rows * cols}) must match, got "
                         f"{imgs.shape} and {z.shape}")
    classes, profiles = class_profiles(z, labels)
    k = max(1, min(k, len(z)))
    top = np.argsort(-z, axis=0)[:k].T  # (d, k)
    used, inverse = np.unique(top, return_inverse=True)
    return TorusExplorerData(rows=rows, cols=cols, classes=[str(c) for c in classes],
                             preferred=profiles.argmax(0), profiles=profiles,
                             top=inverse.reshape(top.shape), images=imgs[used])


def torus_explorer_html(data: TorusExplorerData, *, cell: int = 0, scale: int = 2) -> str:
    """The map explorer as an HTML fragment."""
    n_units = data.rows * data.cols
    cell = cell or max(8, min(28, 480 // max(data.rows, data.cols)))
    h, w = data.images.shape[-2:]
    per_row = 32
    n_tiles = len(data.images)
    padded = np.zeros((-(-n_tiles // per_row) * per_row, *data.images.shape[1:]))
    padded[:n_tiles] = data.images
    tiles = _rgb_frames(padded).reshape(-1, per_row, h, w, 3)
    sprite = _strip(list(tiles))
    profiles = data.profiles
    span = float(np.abs(profiles).max()) or 1.0
    units = []
    for u in range(n_units):
        r, c = divmod(u, data.cols)
        colour = CLASS_COLOURS[int(data.preferred[u]) % len(CLASS_COLOURS)]
        label = f"unit ({r}, {c}): prefers class {data.classes[int(data.preferred[u])]}"
        units.append(f'<button type="button" class="tx-unit" data-unit="{u}" '
                     f'tabindex="{0 if u == 0 else -1}" '
                     f'style="background:{colour}" aria-label="{html.escape(label)}" '
                     f'title="{html.escape(label)}"></button>')
    config = {"rows": data.rows, "cols": data.cols, "H": h, "W": w, "perRow": per_row,
              "classes": data.classes, "colours": CLASS_COLOURS,
              "top": data.top.tolist(),
              "profiles": np.round(profiles.T / span, 3).tolist()}
    legend = "".join(f'<span class="tx-key"><span style="background:'
                     f'{CLASS_COLOURS[i % len(CLASS_COLOURS)]}"></span>{html.escape(name)}'
                     "</span>" for i, name in enumerate(data.classes))
    canvases = "".join(f'<canvas class="tx-img" width="{w * scale}" height="{h * scale}">'
                       "</canvas>" for _ in range(data.top.shape[1]))
    return f"""
<div class="explorer" id="tx-explorer">
<div class="tx-layout">
<div>
<div class="tx-map" role="group" aria-label="units of the {data.rows}x{data.cols} torus"
 style="grid-template-columns:repeat({data.cols},{cell}px);grid-auto-rows:{cell}px">
{"".join(units)}
</div>
<p class="tx-legend">preferred class: {legend}</p>
</div>
<div class="tx-panel" aria-live="polite">
<p id="tx-title">Hover over a unit (or Tab to the map and walk it with the arrow keys) to see the
test images that activate it most and its class profile.</p>
<div class="tx-images">{canvases}</div>
<div id="tx-profile" class="tx-profile"></div>
</div>
</div>
<img id="tx-sprite" src="{png_data_uri(sprite)}" alt="most activating test images" hidden>
{_json_script("tx-data", config)}
<script>{_TORUS_JS}</script>
</div>"""


_TORUS_JS = r"""
(function () {
  var cfg = JSON.parse(document.getElementById('tx-data').textContent);
  var sprite = document.getElementById('tx-sprite');
  var title = document.getElementById('tx-title'), profile = document.getElementById('tx-profile');
  var canvases = document.querySelectorAll('canvas.tx-img');
  var current = null;
  function show(u) {
    var r = Math.floor(u / cfg.cols), c = u % cfg.cols, top = cfg.top[u], p = cfg.profiles[u];
    var best = 0;
    for (var j = 1; j < p.length; j++) { if (p[j] > p[best]) { best = j; } }
    title.textContent = 'Unit (' + r + ', ' + c + '): prefers class ' + cfg.classes[best] +
      '; its ' + top.length + ' most activating test images and its mean activation per class.';
    for (var i = 0; i < canvases.length; i++) {
      var ctx = canvases[i].getContext('2d'), t = top[i];
      ctx.imageSmoothingEnabled = false;
      ctx.drawImage(sprite, (t % cfg.perRow) * cfg.W, Math.floor(t / cfg.perRow) * cfg.H,
                    cfg.W, cfg.H, 0, 0, canvases[i].width, canvases[i].height);
    }
    var rowsHtml = '';
    for (var k = 0; k < p.length; k++) {
      var width = Math.max(0, Math.round(100 * Math.abs(p[k])));
      rowsHtml += '<div class="tx-bar"><span class="tx-name">' + cfg.classes[k] +
        '</span><span class="tx-track"><span class="tx-fill" style="width:' + width +
        '%;background:' + cfg.colours[k % cfg.colours.length] +
        (p[k] < 0 ? ';opacity:.35' : '') + '"></span></span><span class="tx-val">' +
        p[k].toFixed(2) + '</span></div>';
    }
    profile.innerHTML = rowsHtml;
    if (current !== null) { current.classList.remove('tx-active'); }
    current = document.querySelector('.tx-unit[data-unit="' + u + '"]');
    current.classList.add('tx-active');
  }
  var units = document.querySelectorAll('.tx-unit');
  var moves = {ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0]};
  function keydown(u, event) {
    var move = moves[event.key];
    if (!move) { return; }
    event.preventDefault();  // arrow keys walk the torus, wrapping at the edges
    var r = (Math.floor(u / cfg.cols) + move[0] + cfg.rows) % cfg.rows;
    var c = (u % cfg.cols + move[1] + cfg.cols) % cfg.cols;
    var next = units[r * cfg.cols + c];
    units[u].tabIndex = -1; next.tabIndex = 0; next.focus();
  }
  for (var i = 0; i < units.length; i++) {
    (function (el) {
      var u = parseInt(el.getAttribute('data-unit'), 10);
      el.addEventListener('mouseenter', function () { show(u); });
      el.addEventListener('focus', function () { show(u); });
      el.addEventListener('click', function () { show(u); });
      el.addEventListener('keydown', function (event) { keydown(u, event); });
    })(units[i]);
  }
})();
"""

#: CSS of both explorers (added to the page's style sheet)
EXPLORER_STYLE = """
.explorer{border:1px solid #ddd;border-radius:6px;padding:.8em 1em;margin:.6em 0;
background:#fcfcfc} .cx-controls{display:flex;gap:.6em;align-items:center;flex-wrap:wrap}
.cx-controls input[type=range]{width:320px} .cx-panels{display:flex;gap:1em;flex-wrap:wrap;
margin-top:.6em} .cx-panel{margin:0;text-align:center;font-size:.85em;color:#444}
.cx-panel canvas{display:block;border:1px solid #ccc;image-rendering:pixelated;
background:#000;margin:0 auto .3em} .cx-readout{font-size:.9em;min-height:1.4em}
.cx-strip{position:relative;max-width:100%;line-height:0}
.cx-strip img{width:100%;border:0} .cx-marker{position:absolute;top:0;
bottom:0;border:2px solid #e33;box-sizing:border-box;pointer-events:none}
.tx-layout{display:flex;gap:1.2em;flex-wrap:wrap} .tx-map{display:grid;gap:1px;
background:#fff} .tx-unit{border:0;padding:0;margin:0;cursor:pointer}
.tx-unit:focus,.tx-unit.tx-active{outline:3px solid #000;outline-offset:-1px;z-index:1}
.tx-panel{min-width:300px;max-width:420px;font-size:.9em} .tx-images{display:flex;gap:4px;
flex-wrap:wrap} .tx-img{image-rendering:pixelated;border:1px solid #ccc;background:#000}
.tx-bar{display:flex;align-items:center;gap:.4em;height:1.2em}
.tx-name{width:2.5em;text-align:right} .tx-track{display:inline-block;width:200px;
background:#eee;height:.8em} .tx-fill{display:block;height:.8em;min-width:1px}
.tx-val{color:#666;font-size:.85em} .tx-legend{font-size:.85em}
.tx-key{margin-right:.6em;white-space:nowrap} .tx-key span{display:inline-block;width:.9em;
height:.9em;margin-right:.25em;vertical-align:middle}
"""
