"""The one rule that turns a device name into a ``torch.device``."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device | None = None, *, where: str = "hrrkit") -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else the CPU; otherwise ``torch.device(name)``.

    Asking for CUDA on a machine without it raises ``SystemExit`` naming ``where`` (the command),
    instead of failing later inside the first kernel."""
    if isinstance(name, torch.device):
        device = name
    elif name is None or name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise SystemExit(f"{where}: device {name!r}: {exc} (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"{where}: device {str(device)!r} asked for but torch.cuda.is_available() is False")
    return device
