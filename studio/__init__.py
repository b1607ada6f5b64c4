"""What the Gradio app needs, as plain typed functions (app code: only ui.py and tabs.py import gradio).

The library (elgan/) holds the method and imports neither gradio nor this package; the app (app.py),
its tests and benchmarks, and ``python -m training.invert`` (the command-line twin of the Your-photo tab)
use it.

* registry.py  models discovered on disk, loaded once, shared read-only; LRU caches of layers
* render.py    Explore: layers of G(z, c), Phi-walk vs true transform, Fig. 6 grids, Fig. 7 strips
* segment.py   Segment: safe reading of uploads, U-Net masks, cut-outs, generated backgrounds, examples, and
               the warning for uploads unlike the model's training images (elgan/domain.py)
* invert.py    Your photo: a photo inverted into G (elgan/invert.py), its layers, Phi / c edits of its codes
* tabs.py      gradio layout of the model line, Explore and Segment tabs (imported by app.py only)
* ui.py        gradio layout of the Your-photo and Train tabs (imported by app.py and tabs.py), and how a
               refused request is reported
* jobs.py      Train: validated settings -> argv, one background process at a time, stop / resume
* access.py    Train: who may train (a Hugging Face Space is off by default, then an allow-list), and what a
               visitor sees of the server (names, never paths or process ids)
* curves.py    Train: curves and samples read from the runs' log.jsonl and samples/
* progress.py  Train: which stage a job is in and what it does, in plain words, read off its run folder
"""

from .registry import UNTRAINED, ModelError, ModelRegistry, StudioError, discover_models, untrained_bundle

__all__ = ["UNTRAINED", "ModelError", "ModelRegistry", "StudioError", "discover_models", "untrained_bundle"]
