"""Latent-diffusion retrospection (the LDM of HRR's MSR; LaRE²-style one-step mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from diffusers import DDIMScheduler
from torch import Tensor, nn

from hrrkit.retrospect.base import RetrospectionCost, Retrospector, unet_downsampling
from hrrkit.retrospect.ddim import (
    LATENT_SCHEDULER_DEFAULTS,
    DDIMChain,
    fixed_noise,
    model_output_fn,
    predict_original,
)

LatentMode = Literal["one_step", "invert"]

# Token count of the default zero conditioning: CLIP's 77, so the shape matches what a real
# text embedding would have. With all-zero keys and values every attention row is the same
# uniform average, so the output does not depend on this number.
ZERO_CONDITIONING_TOKENS = 77


def vae_downsampling(vae: nn.Module) -> int:
    """Spatial factor between image and latent (SD's AutoencoderKL: 8)."""
    blocks = getattr(vae.config, "block_out_channels", None)
    return 2 ** (len(blocks) - 1) if blocks else 1


class VAECodec:
    """Encode/decode with an ``AutoencoderKL`` in its *scaled* latent space (what the UNet sees).

    ``z = (mean(q(z|x)) − shift) · scaling_factor`` (the posterior mean: deterministic), and
    ``x̂ = decode(z / scaling_factor + shift)``; ``shift`` is 0 for Stable Diffusion v1/v2.
    """

    def __init__(self, vae: nn.Module) -> None:
        self.vae = vae
        self.scaling = float(getattr(vae.config, "scaling_factor", None) or 1.0)
        self.shift = float(getattr(vae.config, "shift_factor", None) or 0.0)

    @property
    def net_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def encode(self, images: Tensor) -> Tensor:
        posterior = self.vae.encode(images.to(self.net_dtype), return_dict=False)[0]
        return (posterior.mode().float() - self.shift) * self.scaling

    def decode(self, latents: Tensor) -> Tensor:
        z = latents / self.scaling + self.shift
        return self.vae.decode(z.to(self.net_dtype), return_dict=False)[0].float()

    def settings(self) -> dict[str, float]:
        return {"scaling_factor": self.scaling, "shift_factor": self.shift}


def load_conditioning(conditioning: Tensor | str | Path | None, dim: int) -> Tensor:
    """The fixed ``encoder_hidden_states`` as ``(1, L, dim)`` float32.

    ``None`` gives zeros ``(1, 77, dim)``: a learned-free "empty" conditioning. It is *not* the
    CLIP embedding of the empty prompt that Stable Diffusion saw in classifier-free-guidance
    training; pass that (computed once, see docs/retrospection.md) for the model's own
    unconditional branch. A path is read as a ``.safetensors`` file holding one tensor (or one
    named ``encoder_hidden_states``) of shape ``(L, dim)`` or ``(1, L, dim)``.
    """
    if conditioning is None:
        return torch.zeros(1, ZERO_CONDITIONING_TOKENS, dim)
    if isinstance(conditioning, (str, Path)):
        path = Path(conditioning)
        if not path.is_file():
            raise FileNotFoundError(f"conditioning embedding file not found: {path}")
        if path.suffix != ".safetensors":
            raise ValueError(f"conditioning embedding must be a .safetensors file (no pickles), got {path}")
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        if "encoder_hidden_states" in tensors:
            conditioning = tensors["encoder_hidden_states"]
        elif len(tensors) == 1:
            conditioning = next(iter(tensors.values()))
        else:
            raise ValueError(
                f"{path} holds tensors {sorted(tensors)}; expected one tensor or one named 'encoder_hidden_states'"
            )
    cond = conditioning.detach().float()
    if cond.dim() == 2:
        cond = cond[None]
    if cond.dim() != 3 or cond.shape[0] != 1 or cond.shape[-1] != dim:
        raise ValueError(
            f"conditioning must have shape (L, {dim}) or (1, L, {dim}) for this UNet "
            f"(cross_attention_dim={dim}); got {tuple(conditioning.shape)}"
        )
    return cond


class LatentRetrospector(Retrospector):
    """VAE encode → one-step noising or DDIM inversion → denoise with a conditional UNet → decode.

    Modes:
        ``"one_step"`` (default): ``z_t = √ᾱ_t z + √(1−ᾱ_t) ε`` with a fixed-seed ε (the same for
            every image of a given size, so results never depend on batching), then one UNet call
            predicts ẑ₀. NFE = 1.
        ``"invert"``: DDIM-invert z to ``strength`` of a ``steps`` grid and sample back. NFE =
            2 · int(steps · strength).

    The latent error is ``|z − ẑ₀|`` in the scaled latent space (before decoding).

    Args:
        vae: an ``AutoencoderKL``.
        unet: a ``UNet2DConditionModel`` on the VAE's latents.
        scheduler_config: the scheduler config the UNet was trained with (default: SD v1.x).
        conditioning: the fixed ``encoder_hidden_states`` (tensor or ``.safetensors`` path), computed
            once; ``None`` = zeros (see :func:`load_conditioning`). No text encoder runs here.
        mode, timestep, seed: one-step settings (``timestep`` in ``[0, num_train_timesteps)``).
        steps, strength, clip_sample: inversion settings (see :class:`~hrrkit.retrospect.ddim.DDIMChain`).
    """

    name = "latent"

    def __init__(
        self,
        vae: nn.Module,
        unet: nn.Module,
        scheduler_config: dict[str, Any] | None = None,
        *,
        conditioning: Tensor | str | Path | None = None,
        mode: LatentMode = "one_step",
        timestep: int = 200,
        seed: int = 0,
        steps: int = 20,
        strength: float = 1.0,
        clip_sample: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("one_step", "invert"):
            raise ValueError(f"mode must be 'one_step' or 'invert', got {mode!r}")
        uconf = getattr(unet, "config", None)
        if uconf is None or not hasattr(uconf, "cross_attention_dim"):
            raise TypeError("unet must be a diffusers UNet2DConditionModel (its config has cross_attention_dim)")
        if getattr(uconf, "addition_embed_type", None) or getattr(uconf, "class_embed_type", None):
            raise ValueError(
                "this UNet needs extra conditioning (addition_embed_type/class_embed_type, e.g. SDXL's "
                "time ids); LatentRetrospector supports UNets conditioned on encoder_hidden_states only"
            )
        latent_channels = getattr(vae.config, "latent_channels", None)
        if latent_channels is not None and latent_channels != uconf.in_channels:
            raise ValueError(
                f"VAE latents have {latent_channels} channels but the UNet takes {uconf.in_channels}: "
                "are they from the same model?"
            )
        dim = uconf.cross_attention_dim
        if isinstance(dim, (list, tuple)):
            dim = dim[0]
        self.mode: LatentMode = mode
        self.seed = int(seed)
        scheduler = dict(LATENT_SCHEDULER_DEFAULTS, **(scheduler_config or {}))
        self.chain = DDIMChain(scheduler, steps, strength, clip_sample)
        n_train = int(self.chain.config.get("num_train_timesteps", 1000))
        if mode == "one_step" and not 0 <= timestep < n_train:
            raise ValueError(f"timestep must be in [0, {n_train}), got {timestep}")
        self.timestep = int(timestep)
        self._alphas_cumprod = DDIMScheduler.from_config(self.chain.config).alphas_cumprod.float()
        self.conditioning = load_conditioning(conditioning, int(dim))
        self._vae_factor = vae_downsampling(vae)
        self._unet_factor = unet_downsampling(unet)
        self.vae = self._prepare_module(vae)
        self.unet = self._prepare_module(unet)
        self.codec = VAECodec(self.vae)
        self.conditioning = self.conditioning.to(self.device)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        config: str | Path | None = None,
        original_config: str | Path | None = None,
        allow_download: bool = False,
        device: torch.device | str | None = None,
        **kwargs: Any,
    ) -> LatentRetrospector:
        """Load VAE, UNet and scheduler config from a local diffusers pipeline folder (``vae/``,
        ``unet/``, ``scheduler/``) or a single ``.safetensors`` checkpoint (see
        :mod:`hrrkit.retrospect.loading`). Nothing is downloaded unless ``allow_download=True``."""
        from hrrkit.retrospect.loading import load_latent_components, load_scheduler_config

        vae, unet = load_latent_components(
            path, config=config, original_config=original_config, allow_download=allow_download
        )
        scheduler = kwargs.pop("scheduler_config", None) or load_scheduler_config(path if config is None else config)
        out = cls(vae, unet, scheduler, **kwargs)
        return out.to(device) if device is not None else out

    @property
    def size_multiple(self) -> int:
        return self._vae_factor * self._unet_factor

    @property
    def latent_factor(self) -> int:
        return self._vae_factor

    def _move_extra(self, device: torch.device) -> None:
        self.conditioning = self.conditioning.to(device)

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "vae": self.codec.settings()}
        if self.mode == "one_step":
            out.update(timestep=self.timestep, seed=self.seed, scheduler=self.chain.config)
        else:
            out.update(self.chain.settings())
        return out

    def _cost_per_tile(self) -> RetrospectionCost:
        unet = 1 if self.mode == "one_step" else self.chain.nfe
        return RetrospectionCost(unet_evals=unet, vae_encodes=1, vae_decodes=1)

    def _modules(self) -> list[nn.Module | Tensor | None]:
        return [self.vae, self.unet, self.conditioning]

    def _count(self) -> None:
        self._nfe_counter += 1

    def noise_like(self, latents: Tensor) -> Tensor:
        """The fixed ε for one-step mode: drawn on the CPU from ``seed`` for one latent of this
        size (device-independent), broadcast over the batch."""
        return fixed_noise(latents, self.seed)

    def _reconstruct_tiles(self, tiles: Tensor) -> dict[str, Tensor | None]:
        if self.channels_last:
            tiles = tiles.contiguous(memory_format=torch.channels_last)
        z0 = self.codec.encode(tiles)
        cond = self.conditioning.to(self.dtype)
        model = model_output_fn(self.unet, self._count, encoder_hidden_states=cond.expand(z0.shape[0], -1, -1))
        if self.mode == "one_step":
            t = torch.tensor(self.timestep)
            a = self._alphas_cumprod[self.timestep]
            zt = a.sqrt() * z0 + (1 - a).sqrt() * self.noise_like(z0)
            z_hat = predict_original(model(zt, t), zt, a, self.chain.prediction_type)
        else:
            z_hat = self.chain.sample(self.chain.invert(z0, model), model)
        recon = self.codec.decode(z_hat)
        return {"reconstruction": recon, "latent_error": (z0 - z_hat).abs()}
