"""Figures → PNG bytes at a URI, drawn by matplotlib's Agg canvas.

No pyplot and no global backend switch: a library that calls ``matplotlib.use`` changes the
backend of whoever imported it (a notebook, a GUI), so figures are made from ``Figure`` and
rendered by an explicit ``FigureCanvasAgg``.
"""

from __future__ import annotations

import io

from sound_captions import storage


def new_figure(width_in: float, height_in: float, *, layout: str | None = "constrained"):
    """A matplotlib ``Figure`` of ``width_in`` × ``height_in`` inches at 100 dpi, on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, uri: str) -> str:
    """Render ``fig`` as PNG and write it to ``uri`` (local or s3://, atomically); returns ``uri``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    storage.write_bytes(uri, buffer.getvalue())
    return uri
