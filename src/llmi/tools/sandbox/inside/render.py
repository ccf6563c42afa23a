"""Running chart code and turning its figures into one PNG (inside the sandbox; no llmi imports).

Used by the zygote: it builds one ``Renderer`` before it forks any job, in two stages —
``prepare_core`` (numpy, matplotlib, the CJK font fallback: all a first chart needs) and
``prepare_rest`` (pandas, seaborn, the modules chart code often imports, a throw-away chart that
fills matplotlib's caches). A job forked between the two finds ``pd`` and ``sns`` as
``LazyModule`` stand-ins that import on first use, so the first chart of a cold start does not
wait for libraries it may never touch. Each job process calls ``Renderer.run`` once.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import struct
import sys
import traceback
import types
import warnings

CODE_FILENAME = "<chart code>"
# Imported up front: cheap, often used by chart code, and (at the weaker sandbox levels) a job
# that dropped privileges may be unable to read the interpreter's files to import them later.
PRELOAD = (
    "math", "random", "datetime", "collections", "itertools", "functools", "statistics",
    "string", "textwrap", "decimal", "fractions", "calendar", "colorsys", "csv", "re",
    "json", "time", "copy", "operator", "encodings.idna", "socket", "threading",
    "matplotlib.dates", "matplotlib.ticker", "matplotlib.patches", "matplotlib.colors",
    "matplotlib.cm", "matplotlib.gridspec", "matplotlib.lines", "matplotlib.font_manager",
    "matplotlib._pylab_helpers", "mpl_toolkits.mplot3d", "PIL.Image",
)  # fmt: skip
CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Noto Sans CJK KR",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "AR PL UKai CN",
)
DEFAULT_MAX_PIXELS = 40_000_000
_GAP = 10  # pixels between stacked figures

Result = tuple[dict, bytes]


class LazyModule(types.ModuleType):
    """Stands in for a module until first touched, then imports it and steps aside.

    >>> ns = {}
    >>> ns["j"] = LazyModule("json", ns, "j")
    >>> ns["j"].dumps([1])
    '[1]'
    >>> type(ns["j"]).__name__  # the job's globals now hold the real module
    'module'
    """

    def __init__(self, name: str, namespace: dict | None = None, key: str = "") -> None:
        super().__init__(name)
        self.__dict__["_llmi_where"] = (namespace, key)

    def __getattr__(self, attr: str):
        module = importlib.import_module(self.__name__)
        namespace, key = self.__dict__["_llmi_where"]
        if namespace is not None and namespace.get(key) is self:
            namespace[key] = module
        return getattr(module, attr)


class Renderer:
    """The plotting libraries, imported and warmed once; ``run`` executes one job's code."""

    def __init__(self, memory_limit: int = 0) -> None:
        self.memory_limit = memory_limit  # only for messages
        self.cjk_font: str | None = None
        self.warm = False  # prepare_rest has run to the end

    # 1. once, in the zygote, before any job is forked
    def prepare_core(self) -> None:
        """What the first chart needs: numpy, matplotlib (Agg) and the CJK fallback."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib._pylab_helpers as pylab_helpers
        import matplotlib.pyplot as plt
        import numpy as np
        from matplotlib.figure import Figure

        logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", message=".*non-interactive.*cannot be shown")
        plt.switch_backend("agg")  # resolved now: the job's pyplot has switch_backend disabled
        self.np, self.plt, self.Figure, self.helpers = np, plt, Figure, pylab_helpers
        self.pd = self.sns = None  # LazyModules in a job forked before prepare_rest
        self.save = Figure.savefig  # the real one; the code only ever sees a stand-in
        self.cjk_font = install_cjk_fallback()

    def prepare_rest(self):
        """The rest, one step per ``next()``, so the zygote can fork jobs in between."""
        import pandas as pd

        self.pd = pd
        yield
        import seaborn as sns

        self.sns = sns
        yield
        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
        yield
        self._warm_up()
        self.plt.close("all")
        self.warm = True

    def _warm_up(self) -> None:
        """Fill matplotlib's font, text and renderer caches, which every job then inherits."""
        np, pd, plt, sns = self.np, self.pd, self.plt, self.sns
        x = np.linspace(0, 1, 20)
        fig, axes = plt.subplots(2, 3, figsize=(6, 4))
        axes[0, 0].plot(x, np.sin(x), label="sin 正弦")
        axes[0, 0].legend()
        axes[0, 0].set_title("warm-up 预热")
        axes[0, 1].bar(["a", "b"], [1, 2])
        axes[0, 2].scatter(x, x)
        axes[1, 0].hist(x)
        axes[1, 1].pie([1, 2])
        axes[1, 2].imshow(np.eye(3))
        df = pd.DataFrame({"k": ["a", "b", "a"], "v": [1.0, 2.0, 3.0]})
        sns.barplot(data=df, x="k", y="v", ax=axes[0, 1])
        sns.lineplot(data=df, x="v", y="v", ax=axes[0, 2])
        sns.heatmap(np.eye(2), ax=axes[1, 2], annot=True)
        df.plot(y="v", ax=axes[1, 0])
        fig.tight_layout()
        self.save(fig, io.BytesIO(), format="png", bbox_inches="tight")

    # 2. in a job process that waits for its job
    def prewarm(self) -> None:
        """Touch the render path while idle, so the job does not pay for copy-on-write faults."""
        plt = self.plt
        try:
            fig, ax = plt.subplots()
            ax.plot([0, 1], [0, 1], label="x")
            ax.set_title("t")
            ax.legend()
            self.save(fig, io.BytesIO(), format="png", bbox_inches="tight")
            plt.close(fig)
        except Exception:  # noqa: BLE001 - only an optimisation
            plt.close("all")

    # 3. the job: run the code, render what it drew
    def run(self, code: str, job: dict, job_pid: int) -> Result:
        kept = self._patch_pyplot()
        namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        namespace.update(plt=self.plt, np=self.np)
        namespace["pd"] = self.pd or LazyModule("pandas", namespace, "pd")
        namespace["sns"] = self.sns or LazyModule("seaborn", namespace, "sns")
        try:
            compiled = compile(code, CODE_FILENAME, "exec")
        except SyntaxError as exc:
            line = f" (line {exc.lineno}: {(exc.text or '').strip()[:120]})" if exc.lineno else ""
            return _fail("syntax", f"the code is not valid Python: {exc.msg}{line}")
        try:
            try:
                exec(compiled, namespace)  # noqa: S102 - the point, inside the sandbox
            finally:
                if os.getpid() != job_pid:
                    os._exit(0)  # a fork of the code must not render or answer
        except SystemExit as exc:
            if exc.code not in (None, 0):
                return _fail("exit", f"the code called sys.exit({exc.code!r})")
        except BaseException as exc:  # noqa: BLE001 - every failure of the code is reported
            return self.failure(exc, code), b""
        return self._render(kept, int(job.get("max_pixels") or DEFAULT_MAX_PIXELS))

    def _patch_pyplot(self) -> list:
        """LLM-I's contract: ``show``/``savefig`` are harmless. Returns the saved figures."""
        plt, save = self.plt, self.save
        kept: list = []

        def keep_figure(fig, fname=None, *args, **kwargs):
            # The figure is kept for the chart; a file-like target (BytesIO) gets the bytes it
            # asked for, a path gets nothing written.
            if fig not in kept:
                kept.append(fig)
            if fname is not None and hasattr(fname, "write"):
                return save(fig, fname, *args, **kwargs)
            return None

        def pyplot_savefig(*args, **kwargs):
            return keep_figure(plt.gcf(), *args, **kwargs)

        def ignore(*args, **kwargs):  # show(), and backend switches (there is no display)
            return None

        self.Figure.savefig = keep_figure
        plt.savefig = pyplot_savefig
        plt.show = ignore
        plt.switch_backend = ignore
        sys.modules["matplotlib"].use = ignore
        return kept

    def _render(self, kept: list, max_pixels: int) -> Result:
        figures = [m.canvas.figure for m in self.helpers.Gcf.get_all_fig_managers()]
        figures += [fig for fig in kept if fig not in figures]
        drawn = [fig for fig in figures if has_content(fig)]
        if not drawn:
            what = "no figure was created" if not figures else "no figure has anything drawn on it"
            return _fail(
                "empty", f"the code drew nothing ({what}); plot something with plt, sns or pandas"
            )
        pngs = []
        for fig in drawn:
            w, h = fig.get_size_inches() * fig.dpi
            if w * h > max_pixels or w <= 0 or h <= 0:
                return _fail(
                    "too_large",
                    f"a figure is too large to render ({int(w)}x{int(h)} pixels; "
                    f"the limit is {max_pixels // 1_000_000} megapixels)",
                )
            buf = io.BytesIO()
            self.save(fig, buf, format="png", bbox_inches="tight")
            pngs.append(buf.getvalue())
        # the stacked size, known before the sheet is allocated
        sizes = [png_size(p) for p in pngs]
        width = max(w for w, _ in sizes)
        height = sum(h for _, h in sizes) + _GAP * (len(sizes) - 1)
        if width * height > max_pixels:
            return _fail(
                "too_large", f"the figures are too large together ({width}x{height} pixels)"
            )
        png = stack(pngs, width, height) if len(pngs) > 1 else pngs[0]
        return {"ok": True, "figures": len(pngs), "width": width, "height": height}, png

    def failure(self, exc: BaseException, code: str = "") -> dict:
        """The result for code (or rendering) that raised: type, message and the line."""
        if isinstance(exc, MemoryError):
            mb = self.memory_limit >> 20
            limit = f" (limit {mb} MB)" if mb else ""
            return {"ok": False, "kind": "memory", "message": f"the code ran out of memory{limit}"}
        lineno = None
        for frame, no in traceback.walk_tb(exc.__traceback__):
            if frame.f_code.co_filename == CODE_FILENAME:
                lineno = no
        line = ""
        if lineno is not None:
            lines = code.splitlines()
            text = lines[lineno - 1].strip()[:120] if 0 < lineno <= len(lines) else ""
            line = f" (line {lineno}: {text})" if text else f" (line {lineno})"
        message = str(exc)
        if len(message) > 500:
            message = message[:500] + "..."
        name = type(exc).__name__
        return {
            "ok": False,
            "kind": "exception",
            "exception": name,
            "message": f"the code raised {name}: {message}{line}",
        }


def _fail(kind: str, message: str) -> Result:
    return {"ok": False, "kind": kind, "message": message}, b""


def install_cjk_fallback() -> str | None:
    """Make the first installed CJK font a per-glyph fallback for every font family.

    Appended to whatever families the code asks for (``sns.set_theme()``, a missing
    ``'SimHei'``), so Chinese, Japanese and Korean text is drawn with real glyphs, not boxes.
    Returns the family used, or None when no CJK font is installed.
    """
    import matplotlib
    from matplotlib import font_manager as fm

    for family in CJK_FAMILIES:
        try:
            path = fm.fontManager.findfont(
                fm.FontProperties(family=family), fallback_to_default=False
            )
        except ValueError:
            continue
        break
    else:
        return None
    for key in ("font.sans-serif", "font.serif", "font.monospace"):
        names = list(matplotlib.rcParams[key])
        if family not in names:
            matplotlib.rcParams[key] = names + [family]
    original = fm.FontManager._find_fonts_by_props

    def find_fonts_with_cjk(self, prop, *args, **kwargs):
        paths = original(self, prop, *args, **kwargs)
        if kwargs.get("fontext", args[0] if args else "ttf") != "ttf" or path in paths:
            return paths
        return [*paths, path]

    fm.FontManager._find_fonts_by_props = find_fonts_with_cjk
    return family


def has_content(fig) -> bool:
    """Whether anything is drawn on ``fig`` (an axes with only a title or limits is not)."""
    if fig.texts or fig.images or fig.lines or fig.patches or fig.legends or fig.artists:
        return True
    for ax in fig.axes:
        if ax.has_data() or ax.texts or ax.tables or ax.artists or ax.images:
            return True
        if getattr(ax, "collections", None) or getattr(ax, "patches", None):
            return True
    return False


def png_size(png: bytes) -> tuple[int, int]:
    return struct.unpack(">II", png[16:24])


def stack(pngs: list[bytes], width: int, height: int) -> bytes:
    """Several figures as one ``width`` x ``height`` PNG (their size together, already checked
    against the cap), one under the other, centred on white."""
    from PIL import Image

    sheet = Image.new("RGBA", (width, height), (255, 255, 255, 255))
    y = 0
    for p in pngs:
        im = Image.open(io.BytesIO(p)).convert("RGBA")
        sheet.paste(im, ((width - im.width) // 2, y), im)
        y += im.height + _GAP
    out = io.BytesIO()
    sheet.save(out, format="PNG")
    return out.getvalue()
