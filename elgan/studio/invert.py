"""The "Your photo" tab as plain functions: a photo in, its inverted codes (z, c), layers and edits out.

The photo is inverted into the selected generator (elgan/invert.py); the codes found then take the
place of the Explore tab's seed: the equivariant walk z + Phi(eps) moves, rotates and scales the
photo's object, and a new c restyles it, all starting from the inverted codes. The codes travel
between requests as a small JSON-able dict (z as z_dim floats, c, and the model they belong to) --
never a tensor or a model in the session state.

An inversion can fail quietly: a photo far from what the GAN draws still gets *some* G(z, c), just not
this photo. So every result carries its distance, and one above POOR_MAE is called out in words.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..bundle import ModelBundle
from ..data.base import eval_transform
from ..invert import Inversion, InversionConfig, Progress, invert
from ..nets.generator import Layers
from ..visualize import to_uint8
from .registry import StudioError
from .render import VIEW_PX, check_category, eps_vector, layer_views, upscale, walk

# Mean absolute pixel error of the reconstruction, as a fraction of the full range [0, 1]. Calibrated on
# the shipped 64 px model: its own samples come back at ~0.02-0.05 and held-out synthetic test scenes
# at ~0.05-0.09; above 0.10 whole regions (the object's colour, the background's pattern) are wrong,
# and the mask describes the reconstruction rather than the photo.
POOR_MAE = 0.10
MIN_STEPS, MAX_STEPS = 0, 300  # the app's bound on the joint search (CPU time grows linearly)


def photo_target(image: Image.Image, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """The photo as the generator sees it -- shorter side to `size`, centre-cropped square (the
    evaluation transform) -- as a target [1, 3, size, size] in [-1, 1] and as uint8 [size, size, 3]."""
    square = eval_transform(image, size)  # uint8 [3, size, size]
    return square[None].float() / 127.5 - 1, square.permute(1, 2, 0).numpy()


def invert_photo(model: ModelBundle, image: Image.Image, steps: int | None = None, seed: int = 0,
                 progress: Progress | None = None) -> tuple[np.ndarray, Inversion]:
    """Invert a photo into `model`'s generator: (the square crop it was matched against, the result)."""
    cfg = InversionConfig(seed=int(seed))
    if steps is not None:
        if not MIN_STEPS <= int(steps) <= MAX_STEPS:
            raise StudioError(f"steps must be in [{MIN_STEPS}, {MAX_STEPS}], got {steps}")
        cfg = replace(cfg, steps=int(steps))
    g = model.generator
    target, original = photo_target(image, g.cfg.size)
    result = invert(g, target.to(next(g.parameters()).device), cfg, model.discriminator, progress=progress)
    return original, result


def is_poor(result: Inversion) -> bool:
    return result.distances["pixel_mae"] > POOR_MAE


def describe(result: Inversion, group_size: int) -> str:
    """One Markdown line: the codes, the distances, the time, and a warning when the match is poor."""
    d = result.distances
    text = (f"c = **{result.c}** (c_sup = {result.c} // {group_size} = {result.c_sup}) · mean pixel error "
            f"**{d['pixel_mae']:.3f}** · perceptual {d['perceptual']:.3f} · ‖z‖²/dim {d['z_norm2']:.2f} · "
            f"{result.steps} steps in {result.seconds:.1f} s")
    if is_poor(result):
        text += (f"\n\n**Poor reconstruction** (error above {POOR_MAE:.2f}): this photo is far from anything "
                 "the model draws, so the layers and edits describe the reconstruction, not your photo.")
    return text


def result_views(original: np.ndarray, result: Inversion, target: int = VIEW_PX) -> dict[str, np.ndarray]:
    """original, reconstruction, background, foreground, mask, cutout: uint8, upscaled to ~target px."""
    views = layer_views(result.layers, target)
    views["reconstruction"] = views.pop("image")
    views["original"] = upscale(original, target)
    return views


def codes_state(model_key: str, result: Inversion) -> dict[str, Any]:
    """What the session keeps: the model's key, z as floats, c (a few hundred bytes)."""
    return {"model": model_key, **result.codes(), "pixel_mae": result.distances["pixel_mae"]}


def state_codes(model: ModelBundle, model_key: str, state: Any) -> tuple[torch.Tensor, int]:
    """The (z [1, z_dim], c) in a session's state, checked against the selected model."""
    if not isinstance(state, Mapping) or "z" not in state or "c" not in state:
        raise StudioError("no inverted photo yet: upload a photo and press Invert")
    if state.get("model") != model_key:
        raise StudioError("the photo was inverted with another model; invert it again with this one")
    z = state["z"]
    z_dim = model.generator.cfg.z_dim
    if not isinstance(z, Sequence) or len(z) != z_dim or \
            not all(isinstance(v, (int, float)) and math.isfinite(v) for v in z):
        raise StudioError(f"the stored code is not {z_dim} finite numbers; invert the photo again")
    device = next(model.generator.parameters()).device
    return torch.tensor([list(map(float, z))], device=device), check_category(model, int(state["c"]))


@torch.inference_mode()
def edit(model: ModelBundle, z: torch.Tensor, c: int, eps: Mapping[str, float]) -> Layers:
    """G(z + Phi(eps), c): the inverted photo moved / rotated / scaled by the latent walk, restyled by c."""
    c = check_category(model, c)
    e = eps_vector(model, eps)
    z_walked = walk(model, z, e if model.phi is not None else e[:, :0])
    return model.generator(z_walked, torch.tensor([c], device=z.device))


def edit_caption(model: ModelBundle, state: Mapping[str, Any], c: int, eps: Mapping[str, float]) -> str:
    g = model.generator.cfg
    moved = {k: v for k, v in eps.items() if v}
    unused = [k for k in moved if model.phi is None or k not in model.perturb.eps_names]
    text = (f"edit of the inverted codes: c {state['c']} → **{c}** (c_sup {c // g.group_size}) · "
            + (", ".join(f"ε {k} {v:+.2f}" for k, v in moved.items()) or "no walk"))
    if unused:
        text += f" · ignored (not in this model): {', '.join(unused)}"
    return text


def caption_strip(panels: Sequence[np.ndarray], labels: Sequence[str], pad: int = 4) -> np.ndarray:
    """Panels of one height side by side on white, each with its label underneath (PIL's built-in font)."""
    h = panels[0].shape[0]
    width = sum(p.shape[1] for p in panels) + pad * (len(panels) + 1)
    canvas = Image.new("RGB", (width, h + 2 * pad + 14), "white")
    draw = ImageDraw.Draw(canvas)
    x = pad
    for panel, label in zip(panels, labels, strict=True):
        canvas.paste(Image.fromarray(np.ascontiguousarray(panel[..., :3])), (x, pad))
        draw.text((x + 2, h + pad + 2), label, fill=(0, 0, 0))
        x += panel.shape[1] + pad
    return np.asarray(canvas)


def edit_views(layers: Layers, target: int = VIEW_PX) -> tuple[np.ndarray, np.ndarray]:
    """The edited composite and its mask, upscaled."""
    return upscale(to_uint8(layers.image[0]), target), upscale(to_uint8(layers.mask[0], (0.0, 1.0)), target)


def gradio_progress(report: Callable[..., Any]) -> Progress:
    """Adapt a gr.Progress-like callable (called with ((step, total), desc=...)) to invert's callback."""
    def on_step(step: int, total: int, loss: float) -> None:
        report((step, total), desc=f"inverting: step {step}/{total}, loss {loss:.3f}")
    return on_step
