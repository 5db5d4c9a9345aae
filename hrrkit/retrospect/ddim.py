"""Deterministic DDIM (η = 0) inversion and sampling on diffusers' schedulers.

Inversion uses :class:`diffusers.DDIMInverseScheduler`, sampling :class:`diffusers.DDIMScheduler`,
both built from the same scheduler config and the same timestep grid, so sampling retraces the
inversion's noise levels exactly in reverse. Convention (diffusers', as in its DiffEdit and
Pix2Pix-Zero inversions): the inversion step from noise level ``ᾱ_s`` to the next level ``ᾱ_t`` uses
the noise prediction ``ε(x_s, t)`` evaluated at the *target* timestep ``t``; the sampling step from
``t`` down uses ``ε(x_t, t)``. Scheduler arithmetic runs in float32 whatever the network dtype.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler
from torch import Tensor

ModelFn = Callable[[Tensor, Tensor], Tensor]

# DDPM / ADM (guided-diffusion) training schedule: what pixel-space UNets such as OpenAI's ADM and
# google/ddpm-* were trained with. Used when a pixel model folder has no scheduler config.
PIXEL_SCHEDULER_DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "clip_sample": True,
    "set_alpha_to_one": True,
    "steps_offset": 0,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}

# Stable Diffusion v1.x schedule; used when a latent model folder has no scheduler config.
LATENT_SCHEDULER_DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}

# The config keys both DDIM schedulers understand and that change the arithmetic.
_DDIM_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "clip_sample",
    "clip_sample_range",
    "set_alpha_to_one",
    "steps_offset",
    "prediction_type",
    "timestep_spacing",
    "rescale_betas_zero_snr",
)


def ddim_scheduler_config(config: dict[str, Any], clip_sample: bool | None = None) -> dict[str, Any]:
    """Reduce any diffusers scheduler config (PNDM, DDPM, DDIM, ...) to the DDIM keys.

    ``timestep_spacing="linspace"`` (which the inverse scheduler lacks) becomes ``"leading"``;
    ``clip_sample`` overrides the config's value when given.
    """
    accepted = set(inspect.signature(DDIMScheduler.__init__).parameters) & set(
        inspect.signature(DDIMInverseScheduler.__init__).parameters
    )
    out = {k: config[k] for k in _DDIM_KEYS if k in config and k in accepted}
    if out.get("trained_betas") is not None:
        out["trained_betas"] = [float(b) for b in out["trained_betas"]]
    if out.get("timestep_spacing", "leading") not in ("leading", "trailing"):
        out["timestep_spacing"] = "leading"
    if clip_sample is not None:
        out["clip_sample"] = bool(clip_sample)
    return out


def model_output_fn(unet: torch.nn.Module, counter: Callable[[], None], **extra: Any) -> ModelFn:
    """Wrap a diffusers UNet as ``(x float32, t) → model output float32``.

    Casts the input to the network's dtype, passes ``extra`` (e.g. ``encoder_hidden_states``),
    calls ``counter()`` once per evaluation, and drops a learned-variance half (ADM predicts
    ``[ε, v]`` with ``out_channels = 2 × in_channels``; DDIM with η = 0 needs only ε).
    """
    param = next(unet.parameters(), None)
    net_dtype = param.dtype if param is not None else torch.float32

    def fn(x: Tensor, t: Tensor) -> Tensor:
        counter()
        timestep = t.to(x.device) if isinstance(t, Tensor) else torch.tensor(t, device=x.device)
        out = unet(x.to(net_dtype), timestep, return_dict=False, **extra)[0].float()
        if out.shape[1] == 2 * x.shape[1]:
            out = out[:, : x.shape[1]]
        elif out.shape[1] != x.shape[1]:
            raise ValueError(
                f"the UNet returns {out.shape[1]} channels for a {x.shape[1]}-channel input; expected "
                f"{x.shape[1]} (ε, x0 or v) or {2 * x.shape[1]} (ε with learned variance)"
            )
        return out

    return fn


def fixed_noise(like: Tensor, seed: int) -> Tensor:
    """The fixed ε of a one-step retrospector: drawn on the CPU from ``seed`` for ONE sample of
    ``like``'s shape (device-independent), broadcast over the batch, so a reconstruction never
    depends on which other images share its batch."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    eps = torch.randn((1, *like.shape[1:]), generator=gen, dtype=torch.float32)
    return eps.to(like.device).expand_as(like)


def predict_original(model_output: Tensor, sample: Tensor, alpha_bar: Tensor, prediction_type: str) -> Tensor:
    """x̂₀ from a model output at noise level ``ᾱ`` (scalar tensor), for ε-, v- or x0-prediction."""
    a = alpha_bar.to(sample.device, torch.float32)
    if prediction_type == "epsilon":
        return (sample - (1 - a).sqrt() * model_output) / a.sqrt()
    if prediction_type == "v_prediction":
        return a.sqrt() * sample - (1 - a).sqrt() * model_output
    if prediction_type == "sample":
        return model_output
    raise ValueError(f"unknown prediction_type {prediction_type!r}; expected epsilon, v_prediction or sample")


class DDIMChain:
    """DDIM inversion to ``strength`` of a ``steps``-step grid and sampling back (η = 0).

    Args:
        scheduler_config: a diffusers scheduler config dict (see :func:`ddim_scheduler_config`).
        steps: size of the timestep grid (DIRE: 20).
        strength: fraction of the grid walked (1.0 = invert all the way to the last timestep; 0.5
            = stop halfway, like img2img). ``k = int(steps · strength)`` steps are taken each way.
        clip_sample: clip x̂₀ to [-1, 1] in each step (``None``: as the config says).
    """

    def __init__(
        self, scheduler_config: dict[str, Any], steps: int, strength: float = 1.0, clip_sample: bool | None = None
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        self.config = ddim_scheduler_config(scheduler_config, clip_sample)
        n_train = self.config.get("num_train_timesteps", 1000)
        if steps > n_train:
            raise ValueError(f"steps={steps} exceeds the scheduler's {n_train} training timesteps")
        self.steps = steps
        self.strength = strength
        self.used_steps = int(steps * strength)
        if self.used_steps < 1:
            raise ValueError(f"steps × strength = {steps} × {strength} rounds to 0 steps; raise one of them")
        self.forward = DDIMScheduler.from_config(self.config)
        self.inverse = DDIMInverseScheduler.from_config(self.config)
        self.forward.set_timesteps(steps)
        self.inverse.set_timesteps(steps)
        self.inverse_timesteps = self.inverse.timesteps[: self.used_steps]
        self.sample_timesteps = self.forward.timesteps[steps - self.used_steps :]
        if not torch.equal(self.inverse_timesteps.flip(0), self.sample_timesteps):
            raise RuntimeError(  # a diffusers change would break the round trip: fail loudly
                f"DDIM grids differ: inverse {self.inverse_timesteps.tolist()} vs forward "
                f"{self.sample_timesteps.tolist()}"
            )

    @property
    def prediction_type(self) -> str:
        return str(self.config.get("prediction_type", "epsilon"))

    def settings(self) -> dict[str, Any]:
        return {"steps": self.steps, "strength": self.strength, "scheduler": self.config}

    @property
    def nfe(self) -> int:
        """UNet evaluations for inversion + sampling."""
        return 2 * self.used_steps

    def invert(self, x0: Tensor, model: ModelFn) -> Tensor:
        """x₀ → x_T (float32) along the DDIM ODE."""
        x = x0.float()
        for t in self.inverse_timesteps:
            x = self.inverse.step(model(x, t), t, x, return_dict=False)[0]
        return x

    def sample(self, xt: Tensor, model: ModelFn) -> Tensor:
        """x_T → x̂₀ (float32) along the DDIM ODE (η = 0)."""
        x = xt.float()
        for t in self.sample_timesteps:
            x = self.forward.step(model(x, t), t, x, eta=0.0, return_dict=False)[0]
        return x
