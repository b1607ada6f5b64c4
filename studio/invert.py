"""The "Your photo" tab as plain functions: a photo in, its inverted codes (z, c), layers and edits out.

The computations are the library's, shared with ``python -m training.invert``: the inversion
(elgan/invert.py: invert_photo, is_poor, result_views) and the two edits (elgan/equivariance.py: edit,
move_layers); this module adds what only the app needs -- words, session state, a progress bar -- and
turns the library's refusals into StudioError. The photo is inverted into the selected generator; the
codes found then take the place of the Explore tab's seed: the equivariant walk z + Phi(eps) moves,
rotates and scales the photo's object, and a new c restyles it, all starting from the inverted codes. The
codes travel between requests as a small JSON-able dict (z as z_dim floats, c, and the model they belong
to) -- never a tensor or a model in the session state.

An inversion can fail quietly: a photo far from what the GAN draws still gets *some* G(z, c), just not
this photo. So every result carries its distances, and a poor one (is_poor) is called out in words.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from elgan import equivariance
from elgan import invert as inversion
from elgan.bundle import ModelBundle
from elgan.invert import MAX_STEPS as MAX_STEPS  # the steps slider's range
from elgan.invert import MIN_EXPLAINED, Inversion, InversionConfig, Progress, is_poor, steps_text
from elgan.invert import MIN_STEPS as MIN_STEPS
from elgan.invert import result_views as result_views  # the tab's panels, at VIEW_PX by default
from elgan.visualize import view as view  # one edited image as a panel

from .registry import StudioError, refusing
from .render import MOVE_NAMES, check_category

# The library's calls, their refusals (steps, c, eps out of range) shown to the visitor as StudioError.
invert_photo = refusing(inversion.invert_photo)  # photo -> (its square crop, the inversion)
edit = refusing(equivariance.edit)  # G(z + Phi(eps), c): the inverted photo moved by the latent walk
move_layers = refusing(equivariance.move_layers)  # T_eps^X G(z, c): the same move done on its layers


def describe(result: Inversion, group_size: int) -> str:
    """One Markdown line: the codes, the distances, the time, and a warning when the match is poor."""
    d = result.distances
    text = (f"shape group **{result.c_sup}**, appearance {result.c % group_size + 1} of {group_size} "
            f"<span class='notation'>(c = {result.c}, c_sup = {result.c_sup})</span> · reproduces "
            f"**{100 * max(d['explained'], 0):.0f}%** of the photo's variation · mean pixel error "
            f"{d['pixel_mae']:.3f} · perceptual {d['perceptual']:.3f} · ‖z‖²/dim {d['z_norm2']:.2f} · "
            f"{steps_text(result)} in {result.seconds:.1f} s")
    if is_poor(result):
        text += (f"\n\n**Poor reconstruction** (under {100 * MIN_EXPLAINED:.0f}% of the variation): this photo "
                 "is far from anything the model draws, so the layers and edits describe the reconstruction, "
                 "not your photo.")
    return text


def codes_state(model_key: str, result: Inversion) -> dict[str, Any]:
    """What the session keeps: the model's key, z as floats, c (a few hundred bytes)."""
    return {"model": model_key, **result.codes(), "explained": result.distances["explained"]}


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


def edit_caption(model: ModelBundle, state: Mapping[str, Any], c: int, eps: Mapping[str, float],
                 walked: torch.Tensor | None = None, moved: torch.Tensor | None = None) -> str:
    """What was edited; with both images, how far the Phi walk is from the true move (0 = equivariant)."""
    active = {k: v for k, v in eps.items() if v}
    unused = [k for k in active if model.phi is None or k not in model.perturb.eps_names]
    text = (f"edit of your photo's codes: appearance c {state['c']} → **{c}** (shape group "
            f"{model.generator.super_category(c)}) · " + (", ".join(f"{MOVE_NAMES.get(k, k)}: ε {k} {v:+.2f}"
                                                   for k, v in active.items()) or "no move"))
    if unused:
        text += f" · ignored (not in this model): {', '.join(unused)}"
    if walked is not None and moved is not None and active:
        text += (f" · the walk vs the layers moved directly (Φ walk vs moved layers): mean |difference| "
                 f"{float((walked - moved).abs().mean()):.3f} (0 = the walk makes exactly the move; large = "
                 "it has not learnt it)")
    return text


def gradio_progress(report: Callable[..., Any], search_steps: int | None = None) -> Progress:
    """Adapt a gr.Progress-like callable (called with ((step, total), desc=...)) to invert's callback.
    The bar runs over both phases; its text counts the search steps (the slider's number), then the
    refinement steps, separately."""
    search = InversionConfig().steps if search_steps is None else int(search_steps)

    def on_step(step: int, total: int, loss: float) -> None:
        phase = f"search step {step}/{search}" if step <= search else \
            f"refinement step {step - search}/{total - search}"
        report((step, total), desc=f"inverting: {phase}, loss {loss:.3f}")
    return on_step
