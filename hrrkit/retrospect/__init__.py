"""Diffusion retrospectors (reconstruction with a diffusion model) and the reconstruction cache."""
