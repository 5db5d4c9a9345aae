"""Evidence maps: where in the image a detector's logit comes from.

For every scale s the map is the per-location contribution of the backbone features to the image's
logit, gradient × activation summed over channels (class-activation style):

    m_s(u, v) = Σ_c F_s,c(u, v) · ∂ logit / ∂ F_s,c(u, v)      (logit units per feature cell)

Positive values push the score towards *generated*, negative ones towards *real*. To first order the
sum of the maps over locations and scales is the part of the logit the backbone features carry (the
pixel-residual moments, when on, and the head's bias are not location-resolved and not in the maps).
Views of one image (tiles) are placed where they were cut and weighted 1/T, as the image logit is the
mean of its views' logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


@dataclass
class ViewLayout:
    """Where an image's views lie on the canvas the detector saw.

    Attributes:
        canvas: ``(H, W, 3)`` uint8 — the crop, the whole image (``native``) or the padded image the
            tiles were cut from, at scale 1 and before line enhancement.
        windows: ``(top, left, height, width)`` of each view on the canvas, in view order.
    """

    canvas: np.ndarray
    windows: list[tuple[int, int, int, int]]


def view_layout(image: Image.Image, policy: str, crop_size: int, max_tiles: int | None) -> ViewLayout:
    """The :class:`ViewLayout` of ``image`` under an evaluation input policy (the same geometry as
    :func:`hrrkit.data.dataset.apply_input_policy`)."""
    from hrrkit.data.dataset import center_crop, pad_to_min_size, tile_windows

    array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if policy == "native":
        return ViewLayout(array, [(0, 0, array.shape[0], array.shape[1])])
    if policy in ("center_crop", "random_crop"):
        crop = center_crop(array, crop_size)
        return ViewLayout(np.ascontiguousarray(crop), [(0, 0, crop_size, crop_size)])
    padded = pad_to_min_size(array, crop_size)
    windows = tile_windows(padded.shape[0], padded.shape[1], crop_size, max_tiles)
    return ViewLayout(np.ascontiguousarray(padded), [(t, l, crop_size, crop_size) for t, l in windows])


def contribution_maps(msr, grads: list[list[torch.Tensor | None]], owners: torch.Tensor,
                      layouts: list[ViewLayout]) -> list[dict[str, np.ndarray]]:
    """Per image, ``{scale: (h, w) float32 map}`` (see the module docstring).

    Args:
        msr: the :class:`~hrrkit.nn.msr.MSROutput` of a forward pass over all views.
        grads: ``grads[s][g]`` ∂(Σ view logits)/∂ ``msr.features[s][g]`` (``None`` = no gradient).
        owners: ``(V,)`` the image of each view (views in the order they were passed to the model).
        layouts: one :class:`ViewLayout` per image.
    """
    owners = owners.cpu()
    num_images = len(layouts)
    local = torch.zeros_like(owners)
    counts = torch.bincount(owners, minlength=num_images)
    for i in range(num_images):
        where = (owners == i).nonzero().flatten()
        local[where] = torch.arange(where.numel())
    out: list[dict[str, np.ndarray]] = [{} for _ in range(num_images)]
    for s, scale in enumerate(msr.scales):
        key = f"{scale:g}"
        placed: dict[int, list[tuple[int, np.ndarray]]] = {}
        for feats, grad, idx in zip(msr.features[s], grads[s], msr.image_index[s]):
            if grad is None:
                cams = torch.zeros(feats.shape[0], *feats.shape[2:])
            else:
                cams = (feats.detach().float() * grad.float()).sum(1).cpu()
            for row, view in enumerate(idx.cpu().tolist()):
                image = int(owners[view])
                placed.setdefault(image, []).append((int(local[view]), (cams[row] / counts[image]).numpy()))
        for image, views in placed.items():
            layout = layouts[image]
            if len(layout.windows) == 1:
                out[image][key] = views[0][1].astype(np.float32)
                continue
            # tiles: a grid at this scale's feature stride over the canvas, each tile at its window
            top, left, wh, ww = layout.windows[0]
            cam_h, cam_w = views[0][1].shape
            stride_h, stride_w = wh / cam_h, ww / cam_w
            grid = np.zeros((max(cam_h, round(layout.canvas.shape[0] / stride_h)),
                             max(cam_w, round(layout.canvas.shape[1] / stride_w))), dtype=np.float32)
            for view_local, cam in views:
                t, l, _, _ = layout.windows[view_local]
                gt = min(round(t / stride_h), grid.shape[0] - cam.shape[0])
                gl = min(round(l / stride_w), grid.shape[1] - cam.shape[1])
                grid[gt : gt + cam.shape[0], gl : gl + cam.shape[1]] += cam
            out[image][key] = grid
    return out
