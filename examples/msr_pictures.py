"""Figures of the MSR documentation page (docs/msr.md): an image, its scales, its edge map, its
line-enhanced version and its residual against a stand-in retrospector.

    python examples/msr_pictures.py --out docs/img

Needs scikit-image (the public-domain ``astronaut`` photograph ships with it) and matplotlib.
The stand-in retrospector is a Gaussian blur: a real one (hrrkit.retrospect) reconstructs the
image with a diffusion model, and its residual is what the detector reads. Runs in seconds on CPU.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from hrrkit.nn import LineEnhancement, NoisyRescale  # noqa: E402
from hrrkit.ops.line_enhance import gaussian_kernel1d  # noqa: E402


def load_image(size: int) -> torch.Tensor:
    from skimage.data import astronaut

    img = torch.from_numpy(astronaut()).permute(2, 0, 1).float().div(255.0)[None]
    return torch.nn.functional.interpolate(img, size=(size, size), mode="bilinear", antialias=True)


class GaussianBlurRetrospector(torch.nn.Module):
    """Stand-in reconstruction: a separable Gaussian blur (loses exactly the fine detail)."""

    def __init__(self, sigma: float = 1.5):
        super().__init__()
        self.register_buffer("kernel", gaussian_kernel1d(sigma, 3.0, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, r = x.shape[1], (self.kernel.numel() - 1) // 2
        k = self.kernel.to(x.dtype)
        x = torch.nn.functional.pad(x, (r, r, r, r), mode="replicate")
        x = torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
        return torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def show(ax, img: torch.Tensor, title: str, gray: bool = False) -> None:
    arr = img.detach()[0]
    if gray:
        ax.imshow(arr.mean(0).numpy(), cmap="magma")
    else:
        ax.imshow(arr.clamp(0, 1).permute(1, 2, 0).numpy())
    ax.set_title(f"{title}\n{arr.shape[-2]}×{arr.shape[-1]}", fontsize=9)
    ax.axis("off")


def main(out: Path, size: int = 256) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    image = load_image(size)

    rescale = NoisyRescale(scales=(0.5, 1.0, 2.0), noise_std=2.0 / 255.0, seed=0).train()
    views = rescale(image)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6), gridspec_kw={"width_ratios": [1, 1, 1]})
    for ax, scale, groups in zip(axes, views.scales, views.groups):
        show(ax, groups[0], f"scale {scale:g} (+ dither)")
    fig.suptitle("NoisyRescale: antialiased resampling and a small Gaussian dither", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "msr_scales.png", dpi=72)
    plt.close(fig)

    line = LineEnhancement(sigma_sharpen=1.0, amount=1.0, sigma_edge=1.0, beta=0.5, impl="reference")
    edges = line.edges(image)
    enhanced = line(image)
    recon = GaussianBlurRetrospector()(enhanced)
    residual = (enhanced - recon).abs()
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.8))
    show(axes[0], image, "image")
    show(axes[1], edges, "edge map |∇G∗sharpen(x)|", gray=True)
    show(axes[2], enhanced, "enhanced x + 0.5·edges")
    show(axes[3], residual / residual.amax(), "residual |x̃ − blur(x̃)| (normalised)", gray=True)
    fig.tight_layout()
    fig.savefig(out / "msr_line_enhancement.png", dpi=72)
    plt.close(fig)
    print(f"wrote {out / 'msr_scales.png'} and {out / 'msr_line_enhancement.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    main(args.out, args.size)
