"""Plotly figures as PNG and SVG from the server, each naming its clip, models and settings inside.

Two engines (docs/one_clip.md has the measurements behind the choice):

* ``"kaleido"`` (preferred): Plotly's own renderer (kaleido 1.5, pinned) driving a local Chrome/Chromium
  through choreographer - the exact figure the page shows, any trace type, true vector SVG. It never
  downloads anything: the browser is ``$HFNET_BROWSER``, else ``$BROWSER_PATH`` (choreographer's own
  variable), else Debian's ``/usr/bin/chromium`` (what ``make test`` installs) or a Chrome/Chromium on
  ``PATH``; plotly.js is the copy inside the plotly package and MathJax is switched off (both would
  otherwise come from a CDN). One browser is started on first use and kept until it has been idle for
  ``KALEIDO_KEEP_S`` (120 s; a cold start costs seconds, a warm render about half a second, a kept
  chromium hundreds of MB); renders are serialised by a lock because kaleido's sync server is not safe
  for concurrent callers.
* ``"fallback"``: no browser at all - this module draws the trace types the explorer uses (heatmap,
  image, bar, scatter), titles, annotations and simple axes with Pillow (PNG) or as plain SVG elements.
  It is less polished (no legends' layout finesse, no hover text, fewer ticks), so it is only used where
  no browser can be found (or when asked for).

Provenance: ``stamp_figure`` adds a visible line "clip · models · settings · hfnet version" under the
plot (and a title when the figure has none); the PNG carries the same in text chunks (``Title``,
``Description``, ``Software``, ``hfnet`` = JSON) and the SVG in ``<title>``, ``<desc>`` and ``<metadata>``.
"""

from __future__ import annotations

import base64
import copy
import html
import io
import json
import math
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hfnet_core import __version__

__all__ = ["find_browser", "figure_engine", "stamp_figure", "provenance_line", "figure_png", "figure_svg",
           "render_fallback", "close_browser", "text_font"]

_BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
_DEFAULT_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
_LOCK = threading.Lock()
_SERVER: dict[str, Any] = {"browser": None}
#: Seconds kaleido may take for one image before it gives up.
KALEIDO_TIMEOUT_S = 60
#: Idle seconds after which the kept browser is closed (``HFNET_KALEIDO_KEEP_S`` overrides).
KALEIDO_KEEP_S = float(os.environ.get("HFNET_KALEIDO_KEEP_S", "120"))


# --- engine choice ---------------------------------------------------------------------------------------

def find_browser() -> str | None:
    """A local Chrome/Chromium for kaleido, or None. Looks, in order, at ``$HFNET_BROWSER``,
    ``$BROWSER_PATH``, /usr/bin/chromium, /usr/bin/chromium-browser, then ``PATH``. Never downloads."""
    for env in ("HFNET_BROWSER", "BROWSER_PATH"):
        p = os.environ.get(env)
        if p:
            return p if Path(p).is_file() and os.access(p, os.X_OK) else None
    for p in _DEFAULT_PATHS:
        if Path(p).is_file() and os.access(p, os.X_OK):
            return p
    for name in _BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def figure_engine() -> str:
    """``"kaleido"`` when kaleido is installed and a browser is found, else ``"fallback"``."""
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return "fallback"
    return "kaleido" if find_browser() else "fallback"


# --- provenance ----------------------------------------------------------------------------------------

def _names(models: Sequence[Any]) -> list[str]:
    return [str(m["name"]) if isinstance(m, Mapping) else str(m) for m in models]


def provenance_line(clip: str, models: Sequence[Any], settings: Mapping[str, Any] | None = None) -> str:
    """"clip: X · models: A, B · k=v, ... · hfnet 0.1.0" - the line every exported figure shows."""
    parts = [f"clip: {clip}", "models: " + (", ".join(_names(models)) or "none")]
    if settings:
        parts.append(", ".join(f"{k}={v}" for k, v in settings.items()))
    parts.append(f"hfnet {__version__}")
    return " · ".join(parts)


def _fig_dict(fig: Any) -> dict[str, Any]:
    if isinstance(fig, Mapping):
        d = copy.deepcopy(dict(fig))
    elif hasattr(fig, "to_plotly_json"):
        d = copy.deepcopy(fig.to_plotly_json())
    else:
        raise TypeError(f"expected a Plotly figure or figure dict, got {type(fig).__name__}")
    d.setdefault("data", [])
    d["layout"] = dict(d.get("layout") or {})
    d.pop("frames", None)  # animation frames: a static image shows the figure as it first appears
    return d


_DTYPES = {"f8": "<f8", "f4": "<f4", "i1": "i1", "u1": "u1", "i2": "<i2", "u2": "<u2", "i4": "<i4", "u4": "<u4",
           "i8": "<i8", "u8": "<u8"}


def _decode_arrays(x: Any) -> Any:
    """Plotly >= 6 stores numpy arrays as {"dtype", "bdata" (base64), "shape"}: back to lists, so the
    fallback (and any reader of the stamped dict) sees plain values."""
    if isinstance(x, Mapping):
        if "bdata" in x and "dtype" in x and str(x["dtype"]) in _DTYPES:
            a = np.frombuffer(base64.b64decode(x["bdata"]), dtype=_DTYPES[str(x["dtype"])])
            shape = x.get("shape")
            if shape:
                a = a.reshape([int(v) for v in str(shape).split(",")])
            return a.tolist()
        return {k: _decode_arrays(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_decode_arrays(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


def stamp_figure(fig: Any, clip: str, models: Sequence[Any], settings: Mapping[str, Any] | None = None
                 ) -> dict[str, Any]:
    """A copy of ``fig`` (figure dict) ready for a still image: a title naming the clip and models when
    the figure has none; sliders, buttons and animation frames dropped (they do nothing in an image).

    The provenance line itself is not drawn by Plotly (it would collide with legends that Plotly
    places below the plot): ``figure_png`` / ``figure_svg`` add it as a strip under the rendered image.
    """
    d = _fig_dict(fig)
    lay = d["layout"]
    for k in ("sliders", "updatemenus"):
        lay.pop(k, None)
    title = lay.get("title")
    text = title.get("text") if isinstance(title, Mapping) else title
    if not text:
        lay["title"] = {"text": f"{html.escape(clip, quote=False)} · {html.escape(', '.join(_names(models)), quote=False)}",
                        "font": {"size": 14}}
        margin = dict(lay.get("margin") or {})
        margin["t"] = max(int(margin.get("t", 100) or 0), 50)
        lay["margin"] = margin
    return d


def text_font(size: int) -> Any:
    """A Pillow font with the glyphs hfnet writes (arrows, dashes, accents): DejaVu Sans when the system
    has it, else Pillow's own scalable default font, else its bitmap font."""
    from PIL import ImageFont

    try:
        return ImageFont.truetype("DejaVuSans.ttf", int(size))
    except OSError:
        try:
            return ImageFont.load_default(size=int(size))
        except TypeError:  # Pillow without FreeType
            return ImageFont.load_default()


#: Height of the provenance strip under every exported figure, in CSS pixels.
STRIP_PX = 22


def _metadata(clip: str, models: Sequence[Any], settings: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"clip": clip, "models": _names(models), "settings": {k: str(v) for k, v in (settings or {}).items()},
            "hfnet_version": __version__}


# --- public entry points ----------------------------------------------------------------------------------

def figure_png(fig: Any, clip: str, models: Sequence[Any], settings: Mapping[str, Any] | None = None,
               width: int | None = None, height: int | None = None, scale: float = 2.0,
               engine: str = "auto") -> bytes:
    """PNG bytes of ``fig`` stamped with clip, models and settings (visible line + PNG text chunks).

    ``engine``: ``"auto"`` (kaleido when a browser is found, else the fallback), ``"kaleido"`` or
    ``"fallback"``. ``width``/``height`` in CSS pixels (default: the figure's own, else 900 x 500);
    ``scale`` multiplies the pixel size (2 = sharp on high-density screens and in print).
    """
    d = stamp_figure(fig, clip, models, settings)
    raw = _render(d, "png", width, height, scale, engine)
    return _png_with_text(raw, clip, models, settings, _size(d, width, height)[0])


def figure_svg(fig: Any, clip: str, models: Sequence[Any], settings: Mapping[str, Any] | None = None,
               width: int | None = None, height: int | None = None, engine: str = "auto") -> bytes:
    """SVG bytes of ``fig`` stamped with clip, models and settings (visible line + ``<title>``,
    ``<desc>`` and ``<metadata>`` elements)."""
    d = stamp_figure(fig, clip, models, settings)
    raw = _render(d, "svg", width, height, 1.0, engine)
    return _svg_with_metadata(raw, clip, models, settings)


def _size(d: Mapping[str, Any], width: int | None, height: int | None) -> tuple[int, int]:
    lay = d.get("layout") or {}
    return int(width or lay.get("width") or 900), int(height or lay.get("height") or 500)


def _render(d: dict[str, Any], fmt: str, width: int | None, height: int | None, scale: float, engine: str) -> bytes:
    if engine not in ("auto", "kaleido", "fallback"):
        raise ValueError(f"engine must be 'auto', 'kaleido' or 'fallback', got {engine!r}")
    w, h = _size(d, width, height)
    if engine == "fallback" or (engine == "auto" and figure_engine() == "fallback"):
        return render_fallback(d, fmt, w, h, scale)
    try:
        return _kaleido(d, fmt, w, h, scale)
    except Exception:
        if engine == "kaleido":
            raise
        return render_fallback(d, fmt, w, h, scale)  # a browser that fails must not lose the export


def _kaleido(d: dict[str, Any], fmt: str, w: int, h: int, scale: float) -> bytes:
    import kaleido

    browser = find_browser()
    if browser is None:
        raise RuntimeError("no Chrome/Chromium found for kaleido (set HFNET_BROWSER to its path)")
    opts = {"format": fmt, "width": w, "height": h, "scale": scale}
    with _LOCK:
        if _SERVER["browser"] != browser:
            _stop_locked()
            kaleido.start_sync_server(path=browser, mathjax=False, timeout=KALEIDO_TIMEOUT_S,
                                      silence_warnings=True)
            _SERVER["browser"] = browser
        try:
            out = kaleido.calc_fig_sync(d, opts=opts)
        except Exception:
            _stop_locked()  # a crashed browser: start afresh next time
            raise
        finally:
            _schedule_stop_locked()
    return bytes(out)


def _stop_locked() -> None:
    """Stop the kept browser (caller holds ``_LOCK``)."""
    import kaleido

    timer = _SERVER.pop("timer", None)
    if timer is not None:
        timer.cancel()
    if _SERVER.get("browser") is not None:
        kaleido.stop_sync_server(silence_warnings=True)
        _SERVER["browser"] = None


def _schedule_stop_locked() -> None:
    """Close the browser after ``KALEIDO_KEEP_S`` idle seconds: a warm render takes ~0.5 s instead of a
    cold start's several seconds, but a kept chromium holds hundreds of MB that a server should not keep
    for one export an hour."""
    timer = _SERVER.pop("timer", None)
    if timer is not None:
        timer.cancel()
    if _SERVER.get("browser") is None:
        return

    def idle_stop() -> None:
        with _LOCK:
            if _SERVER.get("timer") is t:
                _SERVER.pop("timer", None)
                _stop_locked()

    t = threading.Timer(KALEIDO_KEEP_S, idle_stop)
    t.daemon = True
    _SERVER["timer"] = t
    t.start()


def close_browser() -> None:
    """Stop kaleido's browser now (it also stops by itself after ``KALEIDO_KEEP_S`` idle seconds)."""
    with _LOCK:
        _stop_locked()


def _png_with_text(raw: bytes, clip: str, models: Sequence[Any], settings: Mapping[str, Any] | None,
                   css_width: int) -> bytes:
    """The rendered PNG with a provenance strip under it and provenance text chunks."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("Title", f"{clip} — {', '.join(_names(models))}")
    info.add_itxt("Description", provenance_line(clip, models, settings))
    info.add_itxt("Software", f"hfnet {__version__}")
    info.add_itxt("hfnet", json.dumps(_metadata(clip, models, settings), ensure_ascii=False))
    from PIL import ImageDraw

    with Image.open(io.BytesIO(raw)) as im:
        im = im.convert("RGB")
    s = max(im.width / max(css_width, 1), 0.1)  # pixels per CSS pixel (the render scale)
    strip = round(STRIP_PX * s)
    out = Image.new("RGB", (im.width, im.height + strip), "white")
    out.paste(im, (0, 0))
    ImageDraw.Draw(out).text((round(8 * s), im.height + strip // 2), provenance_line(clip, models, settings),
                             fill=(85, 85, 85), font=text_font(max(6, round(11 * s))), anchor="lm")
    buf = io.BytesIO()
    out.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _svg_with_metadata(raw: bytes, clip: str, models: Sequence[Any], settings: Mapping[str, Any] | None) -> bytes:
    """The rendered SVG, one provenance strip taller, with ``<title>``, ``<desc>`` and ``<metadata>``."""
    text = raw.decode("utf-8")
    m = re.search(r"<svg\b[^>]*>", text)
    if m is None:
        raise ValueError("renderer returned no <svg> element")
    root = m.group(0)
    wm, hm = re.search(r'\swidth="([\d.]+)', root), re.search(r'\sheight="([\d.]+)', root)
    vb = re.search(r'viewBox="([-\d.]+)[ ,]+([-\d.]+)[ ,]+([\d.]+)[ ,]+([\d.]+)"', root)
    if not (wm and hm):
        raise ValueError("renderer returned an <svg> without width/height")
    w, h = float(wm.group(1)), float(hm.group(1))
    new_root = root.replace(hm.group(0), f' height="{h + STRIP_PX:g}')
    if vb:
        x0, y0, vw, vh = (float(v) for v in vb.groups())
        new_root = new_root.replace(vb.group(0), f'viewBox="{x0:g} {y0:g} {vw:g} {vh * (h + STRIP_PX) / h:g}"')
    esc = html.escape
    line = provenance_line(clip, models, settings)
    meta = (f"<title>{esc(clip)} · {esc(', '.join(_names(models)))}</title>"
            f"<desc>{esc(line)}</desc>"
            f'<metadata><hfnet xmlns="urn:hfnet:provenance">'
            f"{esc(json.dumps(_metadata(clip, models, settings), ensure_ascii=False))}</hfnet></metadata>")
    strip = (f'<g class="hfnet-provenance"><rect x="0" y="{h:g}" width="{w:g}" height="{STRIP_PX}" fill="white"/>'
             f'<text x="8" y="{h + STRIP_PX / 2:g}" font-family="sans-serif" font-size="11" fill="#555555" '
             f'dominant-baseline="middle">{esc(line)}</text></g>')
    end = text.rstrip().rfind("</svg>")
    if end < 0:
        raise ValueError("renderer returned an unterminated <svg> element")
    return (text[: m.start()] + new_root + meta + text[m.end(): end] + strip + "</svg>\n").encode("utf-8")


# --- the browser-free fallback ------------------------------------------------------------------------------

_COLORWAY = ("#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880")


def _rgb(c: Any, default: tuple[int, int, int] = (99, 110, 250)) -> tuple[int, int, int]:
    if isinstance(c, (tuple, list)) and len(c) >= 3:
        return tuple(int(v) for v in c[:3])  # type: ignore[return-value]
    if not isinstance(c, str):
        return default
    s = c.strip().lower()
    if s.startswith("#") and len(s) in (4, 7):
        s = s[1:]
        if len(s) == 3:
            s = "".join(ch * 2 for ch in s)
        return int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16)
    m = re.match(r"rgba?\(([^)]*)\)", s)
    if m:
        vals = [float(v) for v in m.group(1).split(",")[:3]]
        return int(vals[0]), int(vals[1]), int(vals[2])
    try:
        from PIL import ImageColor

        return ImageColor.getrgb(s)[:3]
    except ValueError:
        return default


def _lut(colorscale: Any) -> np.ndarray:
    """A 256 x 3 colour table from a Plotly colorscale (name or [[frac, colour], ...])."""
    import plotly.colors as pc

    scale = colorscale
    if isinstance(scale, str) or scale is None:
        try:
            scale = pc.get_colorscale(scale or "Plasma")
        except Exception:  # noqa: BLE001 - unknown name: Plotly's default
            scale = pc.get_colorscale("Plasma")
    stops = np.asarray([float(s[0]) for s in scale])
    cols = np.asarray([_rgb(s[1]) for s in scale], np.float32)
    xs = np.linspace(0, 1, 256)
    return np.stack([np.interp(xs, stops, cols[:, c]) for c in range(3)], axis=1)


def _plain_text(t: Any) -> str:
    s = "" if t is None else str(t)
    s = re.sub(r"<br\s*/?>", "\n", s, flags=re.I)
    return html.unescape(re.sub(r"<[^>]+>", "", s))


class _Axis:
    """A data range mapped onto a pixel span (categories become 0, 1, 2, ...)."""

    def __init__(self, spec: Mapping[str, Any], lo_px: float, hi_px: float) -> None:
        self.spec, self.lo_px, self.hi_px = spec, lo_px, hi_px
        self.categories: list[str] = []
        self.lo, self.hi = math.inf, -math.inf
        self.reversed = spec.get("autorange") == "reversed"

    def index(self, v: Any) -> float:
        if isinstance(v, str):
            if v not in self.categories:
                self.categories.append(v)
            return float(self.categories.index(v))
        return float(v)

    def extend(self, lo: float, hi: float) -> None:
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)

    def finish(self) -> None:
        rng = self.spec.get("range")
        if rng and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng):
            self.lo, self.hi = float(rng[0]), float(rng[1])
            return
        if not math.isfinite(self.lo):
            self.lo, self.hi = 0.0, 1.0
        if self.hi == self.lo:
            self.lo, self.hi = self.lo - 0.5, self.hi + 0.5
        if self.reversed:
            self.lo, self.hi = self.hi, self.lo

    def px(self, v: float) -> float:
        return self.lo_px + (float(v) - self.lo) / (self.hi - self.lo) * (self.hi_px - self.lo_px)


class _Scene:
    """Primitives in pixel coordinates, painted by Pillow (PNG) or written as SVG."""

    def __init__(self, w: int, h: int) -> None:
        self.w, self.h = w, h
        self.items: list[tuple[Any, ...]] = []

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: tuple[int, int, int], alpha: float = 1.0) -> None:
        self.items.append(("rect", min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), fill, alpha))

    def image(self, x0: float, y0: float, x1: float, y1: float, rgb: np.ndarray, alpha: float = 1.0) -> None:
        self.items.append(("image", x0, y0, x1, y1, np.ascontiguousarray(rgb, np.uint8), alpha))

    def text(self, x: float, y: float, s: str, size: int = 12, anchor: str = "start",
             colour: tuple[int, int, int] = (40, 40, 40)) -> None:
        if s:
            self.items.append(("text", x, y, s, size, anchor, colour))

    def line(self, pts: Sequence[tuple[float, float]], colour: tuple[int, int, int], width: float = 1.5) -> None:
        if len(pts) >= 2:
            self.items.append(("line", list(pts), colour, width))

    def dot(self, x: float, y: float, r: float, colour: tuple[int, int, int]) -> None:
        self.items.append(("dot", x, y, r, colour))

    def png(self, scale: float) -> bytes:
        from PIL import Image, ImageDraw

        s = float(scale)
        canvas = Image.new("RGBA", (max(1, round(self.w * s)), max(1, round(self.h * s))), (255, 255, 255, 255))
        fonts: dict[int, Any] = {}

        def font(size: int) -> Any:
            if size not in fonts:
                fonts[size] = text_font(max(6, round(size * s)))
            return fonts[size]

        for it in self.items:
            kind = it[0]
            if kind in ("rect", "image"):
                x0, y0, x1, y1 = (round(v * s) for v in it[1:5])
                if x1 - x0 < 1 or y1 - y0 < 1:
                    continue
                if kind == "rect":
                    tile = Image.new("RGBA", (x1 - x0, y1 - y0), (*it[5], round(255 * it[6])))
                else:
                    tile = Image.fromarray(it[5]).convert("RGBA").resize((x1 - x0, y1 - y0), Image.NEAREST)
                    if it[6] < 1:
                        tile.putalpha(round(255 * it[6]))
                canvas.alpha_composite(tile, dest=(x0, y0))
            elif kind == "text":
                _, x, y, txt, size, anchor, colour = it
                pil_anchor = {"start": "lm", "middle": "mm", "end": "rm"}[anchor]
                draw = ImageDraw.Draw(canvas)
                lines = txt.split("\n")
                for i, ln in enumerate(lines):
                    dy = (i - (len(lines) - 1) / 2) * size * 1.2
                    draw.text((x * s, (y + dy) * s), ln, fill=(*colour, 255), font=font(size), anchor=pil_anchor)
            elif kind == "line":
                ImageDraw.Draw(canvas).line([(px * s, py * s) for px, py in it[1]], fill=(*it[2], 255),
                                            width=max(1, round(it[3] * s)))
            elif kind == "dot":
                _, x, y, r, colour = it
                ImageDraw.Draw(canvas).ellipse([(x - r) * s, (y - r) * s, (x + r) * s, (y + r) * s],
                                               fill=(*colour, 255))
        buf = io.BytesIO()
        canvas.convert("RGB").save(buf, format="PNG")
        return buf.getvalue()

    def svg(self) -> bytes:
        from PIL import Image

        esc = html.escape
        out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.w}" height="{self.h}" '
               f'viewBox="0 0 {self.w} {self.h}" font-family="sans-serif">',
               f'<rect width="{self.w}" height="{self.h}" fill="white"/>']
        for it in self.items:
            kind = it[0]
            if kind == "rect":
                _, x0, y0, x1, y1, fill, alpha = it
                out.append(f'<rect x="{x0:.2f}" y="{y0:.2f}" width="{x1 - x0:.2f}" height="{y1 - y0:.2f}" '
                           f'fill="rgb{tuple(fill)}" fill-opacity="{alpha:.3f}"/>')
            elif kind == "image":
                _, x0, y0, x1, y1, rgb, alpha = it
                buf = io.BytesIO()
                Image.fromarray(rgb).save(buf, format="PNG")
                uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
                out.append(f'<image x="{x0:.2f}" y="{y0:.2f}" width="{x1 - x0:.2f}" height="{y1 - y0:.2f}" '
                           f'preserveAspectRatio="none" opacity="{alpha:.3f}" style="image-rendering:pixelated" '
                           f'href="{uri}"/>')
            elif kind == "text":
                _, x, y, txt, size, anchor, colour = it
                lines = txt.split("\n")
                for i, ln in enumerate(lines):
                    dy = (i - (len(lines) - 1) / 2) * size * 1.2
                    out.append(f'<text x="{x:.2f}" y="{y + dy:.2f}" font-size="{size}" text-anchor="{anchor}" '
                               f'dominant-baseline="middle" fill="rgb{tuple(colour)}">{esc(ln)}</text>')
            elif kind == "line":
                pts = " ".join(f"{px:.2f},{py:.2f}" for px, py in it[1])
                out.append(f'<polyline points="{pts}" fill="none" stroke="rgb{tuple(it[2])}" '
                           f'stroke-width="{it[3]}"/>')
            elif kind == "dot":
                _, x, y, r, colour = it
                out.append(f'<circle cx="{x:.2f}" cy="{y:.2f}" r="{r}" fill="rgb{tuple(colour)}"/>')
        out.append("</svg>")
        return "\n".join(out).encode("utf-8")


def _axis_key(ref: str | None, letter: str) -> str:
    ref = ref or letter
    return f"{letter}axis{ref[1:]}"


def _heat_coords(tr: Mapping[str, Any], n: int, letter: str, axis: _Axis) -> tuple[float, float]:
    """(first cell centre, cell step) of a heatmap along one axis."""
    vals = tr.get(letter)
    if vals is not None and len(vals) == n:
        idx = [axis.index(v) for v in vals]
        step = (idx[-1] - idx[0]) / (n - 1) if n > 1 else 1.0
        return idx[0], step or 1.0
    return float(tr.get(f"{letter}0", 0.0)), float(tr.get(f"d{letter}", 1.0))


def render_fallback(fig: Any, fmt: str = "png", width: int = 900, height: int = 500, scale: float = 2.0) -> bytes:
    """Draw a Plotly figure without a browser: heatmap, image, bar and scatter traces, title,
    annotations, simple axes. Other trace types are listed in a note on the image instead of drawn."""
    d = _decode_arrays(_fig_dict(fig))
    lay = d["layout"]
    m = {"l": 80, "r": 80, "t": 100, "b": 80, **{k: v for k, v in (lay.get("margin") or {}).items()
                                                  if k in ("l", "r", "t", "b") and v is not None}}
    traces = [t for t in d["data"] if t.get("visible", True) is not False]
    named = [t for t in traces if t.get("name") and t.get("type", "scatter") in ("bar", "scatter", "scattergl")
             and t.get("showlegend") is not False]
    show_legend = bool(named) and lay.get("showlegend") is not False and len(traces) > 1
    extra = 22 if show_legend else 0
    sc = _Scene(width, height)
    labels = [_plain_text(v) for t in traces for v in (t.get("y") or []) if isinstance(v, str)]
    longest = max((len(line) for lab in labels for line in lab.split("\n")), default=0)
    # a rough automargin: room for category labels / numeric ticks left of the plot, an axis title below
    y_visible = any((v or {}).get("visible") is not False for k, v in lay.items() if k.startswith("yaxis")) \
        or not any(k.startswith("yaxis") for k in lay)
    left = max(float(m["l"]), 6.8 * longest + 14 if longest else 0.0, 40.0 if y_visible else 0.0)
    x_titled = any(isinstance(v, Mapping) and v.get("title") for k, v in lay.items() if k.startswith("xaxis"))
    bottom = max(float(m["b"]), 48.0 if x_titled else 0.0)
    pl, pr, pt, pb = left, width - float(m["r"]), float(m["t"]), height - bottom - extra
    axes: dict[str, _Axis] = {}

    def axis(tr: Mapping[str, Any], letter: str) -> _Axis:
        key = _axis_key(tr.get(f"{letter}axis"), letter)
        if key not in axes:
            spec = dict(lay.get(key) or {})
            dom = spec.get("domain") or [0.0, 1.0]
            if letter == "x":
                axes[key] = _Axis(spec, pl + dom[0] * (pr - pl), pl + dom[1] * (pr - pl))
            else:
                axes[key] = _Axis(spec, pb - dom[0] * (pb - pt), pb - dom[1] * (pb - pt))
                if tr.get("type") == "image" and "range" not in spec and "autorange" not in spec:
                    axes[key].reversed = True
        return axes[key]

    # pass 1: data extents
    stacks: dict[tuple[str, float], float] = {}
    for tr in traces:
        kind = tr.get("type", "scatter")
        ax, ay = axis(tr, "x"), axis(tr, "y")
        if kind == "heatmap":
            z = _z(tr)
            x0, dx = _heat_coords(tr, z.shape[1], "x", ax)
            y0, dy = _heat_coords(tr, z.shape[0], "y", ay)
            ax.extend(x0 - dx / 2, x0 + dx * (z.shape[1] - 0.5))
            ay.extend(y0 - dy / 2, y0 + dy * (z.shape[0] - 0.5))
        elif kind == "image":
            img = _image_array(tr)
            ax.extend(-0.5, img.shape[1] - 0.5)
            ay.extend(-0.5, img.shape[0] - 0.5)
        elif kind == "bar":
            horizontal = tr.get("orientation") == "h"
            cats, vals = (tr.get("y"), tr.get("x")) if horizontal else (tr.get("x"), tr.get("y"))
            cax, vax = (ay, ax) if horizontal else (ax, ay)
            for c, v in zip(cats or [], vals or []):
                ci = cax.index(c)
                base = stacks.get((str(id(vax)), ci), 0.0) if lay.get("barmode") == "stack" else 0.0
                stacks[(str(id(vax)), ci)] = base + float(v or 0)
                cax.extend(ci - 0.5, ci + 0.5)
                vax.extend(min(0.0, base + float(v or 0)), max(0.0, base + float(v or 0)))
        elif kind in ("scatter", "scattergl"):
            xs = [ax.index(v) for v in (tr.get("x") or [])]
            ys = [ay.index(v) for v in (tr.get("y") or [])]
            if xs and ys:
                pad_x = 0.05 * ((max(xs) - min(xs)) or 1.0)
                pad_y = 0.05 * ((max(ys) - min(ys)) or 1.0)
                ax.extend(min(xs) - pad_x, max(xs) + pad_x)
                ay.extend(min(ys) - pad_y, max(ys) + pad_y)
    for a in axes.values():
        a.finish()

    # pass 2: draw
    skipped: dict[str, int] = {}
    stacks.clear()
    legend: list[tuple[str, tuple[int, int, int]]] = []
    for n, tr in enumerate(traces):
        kind = tr.get("type", "scatter")
        ax, ay = axis(tr, "x"), axis(tr, "y")
        opacity = float(tr.get("opacity", 1.0) if tr.get("opacity") is not None else 1.0)
        if kind == "heatmap":
            z = _z(tr)
            zmin = tr.get("zmin", np.nanmin(z))
            zmax = tr.get("zmax", np.nanmax(z))
            span = (float(zmax) - float(zmin)) or 1.0
            u = np.clip((np.nan_to_num(z, nan=float(zmin)) - float(zmin)) / span, 0, 1)
            rgb = _lut(tr.get("colorscale"))[np.round(u * 255).astype(int)].astype(np.uint8)
            x0, dx = _heat_coords(tr, z.shape[1], "x", ax)
            y0, dy = _heat_coords(tr, z.shape[0], "y", ay)
            xa, xb = ax.px(x0 - dx / 2), ax.px(x0 + dx * (z.shape[1] - 0.5))
            ya, yb = ay.px(y0 - dy / 2), ay.px(y0 + dy * (z.shape[0] - 0.5))
            if xa > xb:
                rgb, (xa, xb) = rgb[:, ::-1], (xb, xa)
            if ya > yb:  # row 0 at the bottom (the usual case): flip so it is drawn last row first
                rgb, (ya, yb) = rgb[::-1], (yb, ya)
            sc.image(xa, ya, xb, yb, rgb, opacity)
        elif kind == "image":
            img = _image_array(tr)
            xa, xb = ax.px(-0.5), ax.px(img.shape[1] - 0.5)
            ya, yb = ay.px(-0.5), ay.px(img.shape[0] - 0.5)
            if ya > yb:
                img, (ya, yb) = img[::-1], (yb, ya)
            sc.image(min(xa, xb), ya, max(xa, xb), yb, img, opacity)
        elif kind == "bar":
            horizontal = tr.get("orientation") == "h"
            cats, vals = (tr.get("y"), tr.get("x")) if horizontal else (tr.get("x"), tr.get("y"))
            cax, vax = (ay, ax) if horizontal else (ax, ay)
            colours = (tr.get("marker") or {}).get("color", _COLORWAY[n % len(_COLORWAY)])
            for i, (c, v) in enumerate(zip(cats or [], vals or [])):
                ci = cax.index(c)
                col = _rgb(colours[i] if isinstance(colours, (list, tuple)) else colours)
                base = stacks.get((str(id(vax)), ci), 0.0) if lay.get("barmode") == "stack" else 0.0
                top = base + float(v or 0)
                stacks[(str(id(vax)), ci)] = top
                a0, a1 = cax.px(ci - 0.4), cax.px(ci + 0.4)
                b0, b1 = vax.px(base), vax.px(top)
                if horizontal:
                    sc.rect(b0, a0, b1, a1, col, opacity)
                else:
                    sc.rect(a0, b0, a1, b1, col, opacity)
                texts = tr.get("text")
                if isinstance(texts, (list, tuple)) and i < len(texts) and horizontal:
                    sc.text(max(b0, b1) + 4, (a0 + a1) / 2, _plain_text(texts[i]), 10)
            if tr.get("name"):
                legend.append((_plain_text(tr["name"]), _rgb(colours if isinstance(colours, str) else None)))
        elif kind in ("scatter", "scattergl"):
            col = _rgb(((tr.get("line") or {}).get("color")) or ((tr.get("marker") or {}).get("color"))
                       or _COLORWAY[n % len(_COLORWAY)])
            pts = [(ax.px(ax.index(x)), ay.px(ay.index(y))) for x, y in zip(tr.get("x") or [], tr.get("y") or [])
                   if x is not None and y is not None]
            mode = tr.get("mode") or ("lines+markers" if len(pts) < 20 else "lines")
            if "lines" in mode:
                sc.line(pts, col)
            if "markers" in mode:
                r = float((tr.get("marker") or {}).get("size", 6) or 6) / 2
                for x, y in pts:
                    sc.dot(x, y, r, col)
            if tr.get("name"):
                legend.append((_plain_text(tr["name"]), col))
        else:
            skipped[kind] = skipped.get(kind, 0) + 1

    _draw_axes(sc, lay, axes)
    title = lay.get("title")
    text = title.get("text") if isinstance(title, Mapping) else title
    sc.text(width / 2, max(14.0, pt / 2), _plain_text(text), 16, "middle")
    for a in lay.get("annotations") or []:
        _draw_annotation(sc, a, axes, (pl, pr, pt, pb))
    if show_legend:
        x, y = pl, height - extra / 2
        for name, col in legend[:10]:
            sc.rect(x, y - 5, x + 10, y + 5, col)
            sc.text(x + 14, y, name, 10)
            x += 14 + 6.2 * len(name) + 16
    if skipped:
        sc.text(pl, height - 8, "not drawn without a browser: " + ", ".join(f"{v} {k}" for k, v in skipped.items()),
                10, "start", (150, 60, 60))
    return sc.png(scale) if fmt == "png" else sc.svg()


def _z(tr: Mapping[str, Any]) -> np.ndarray:
    z = tr.get("z")
    z = np.asarray([[0.0]] if z is None else z, dtype=np.float64)
    return z.reshape(1, -1) if z.ndim == 1 else z


def _image_array(tr: Mapping[str, Any]) -> np.ndarray:
    if tr.get("z") is not None:
        return np.clip(np.asarray(tr["z"], np.float64), 0, 255).astype(np.uint8)[..., :3]
    src = str(tr.get("source") or "")
    if src.startswith("data:") and "," in src:
        from PIL import Image

        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
            return np.asarray(im.convert("RGB"))
    return np.full((2, 2, 3), 200, np.uint8)


def _draw_axes(sc: _Scene, lay: Mapping[str, Any], axes: Mapping[str, _Axis]) -> None:
    for key, a in axes.items():
        if a.spec.get("visible") is False or a.spec.get("showticklabels") is False:
            continue
        horizontal = key.startswith("x")
        other = (a.spec.get("anchor") or ("y" if horizontal else "x"))
        oa = axes.get(_axis_key(other, "y" if horizontal else "x"))
        edge = (oa.px(oa.lo) if oa else sc.h - 40) if horizontal else (oa.px(oa.lo) if oa else 40)
        if a.categories:
            ticks = [(i, c) for i, c in enumerate(a.categories)]
        else:
            lo, hi = sorted((a.lo, a.hi))
            step = _nice_step((hi - lo) / 4)
            start = math.ceil(lo / step) * step
            fmt = "{:.0%}" if a.spec.get("tickformat") == ".0%" else "{:g}"
            ticks = [(v, fmt.format(round(v, 10))) for v in np.arange(start, hi + step * 1e-6, step)]
        for v, label in ticks:
            p = a.px(v)
            if horizontal:
                sc.text(p, edge + 12, _plain_text(label), 10, "middle", (90, 90, 90))
            else:
                sc.text(edge - 6, p, _plain_text(label).replace("\n", " "), 10, "end", (90, 90, 90))
        title = a.spec.get("title")
        text = title.get("text") if isinstance(title, Mapping) else title
        if text:
            if horizontal:
                sc.text((a.lo_px + a.hi_px) / 2, edge + 30, _plain_text(text), 11, "middle")
            else:
                sc.text(max(8.0, edge - 60), (a.lo_px + a.hi_px) / 2, _plain_text(text), 11, "middle")


def _nice_step(raw: float) -> float:
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    return next(f * mag for f in (1, 2, 2.5, 5, 10) if f * mag >= raw)


def _draw_annotation(sc: _Scene, a: Mapping[str, Any], axes: Mapping[str, _Axis],
                     box: tuple[float, float, float, float]) -> None:
    pl, pr, pt, pb = box
    xref, yref = a.get("xref", "paper"), a.get("yref", "paper")
    xr = str(xref).split(" ")[0]
    yr = str(yref).split(" ")[0]
    x = float(a.get("x", 0.5) or 0)
    y = float(a.get("y", 0.5) or 0)
    xa, ya = axes.get(_axis_key(xr, "x")), axes.get(_axis_key(yr, "y"))
    px = pl + x * (pr - pl) if xr == "paper" or xa is None else xa.px(x)
    py = pb - y * (pb - pt) if yr == "paper" or ya is None else ya.px(y)
    px += float(a.get("xshift", 0) or 0)
    py -= float(a.get("yshift", 0) or 0)
    size = int(((a.get("font") or {}).get("size")) or 12)
    anchor = {"left": "start", "right": "end"}.get(a.get("xanchor"), "middle")
    yanchor = a.get("yanchor")
    py += size * 0.6 if yanchor == "top" else (-size * 0.6 if yanchor == "bottom" else 0)
    colour = _rgb((a.get("font") or {}).get("color") or "#282828")
    sc.text(px, py, _plain_text(a.get("text")), size, anchor, colour)
