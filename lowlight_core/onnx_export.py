"""ONNX export of the registered models: `export_onnx(model, path)`, `lowlight onnx MODEL -o FILE.onnx`.

One self-contained graph per model (opset OPSET, dynamic batch, height and width):
  inputs   image       float32 N x 3 x H x W in [0, 1] (clamped)
           exposure    float32 scalar, target exposure E (models with the "exposure" control; clamped to
                       controls.EXPOSURE_RANGE)
           iterations  int64 scalar, curve steps (models with the "iterations" control; clamped to
                       [1, controls.MAX_ITERATIONS])
  output   enhanced    float32 N x 3 x H x W in [0, 1]
A graph cannot raise, so out-of-range controls are clamped instead of refused (enhance() refuses them).

What runs is what `lowlight_core.enhance` runs on a float image without denoising, with the fused ops in their
reference formulation (lowlight_core.reference) as standard ONNX operators: the networks whole (enhance tiles the
local ones, the same result up to float rounding), the thumbnails of Zero-DCE++ and the bilateral grid inside the
graph (the photo path's block means and antialiased resize as two small weight matrices, so any H and W work),
the bilateral grid's trilinear slice as gathers and lerps (ONNX's GridSample is 2-D at opset 18), and the curve
steps as an ONNX Loop over `iterations`. torch's exporter cannot trace a loop whose trip count is an input, so the
curve models are exported up to their curve maps and the Loop is appended here with onnx.helper.

Needs the [onnx] extra (onnx, onnxscript for torch's exporter; onnxruntime to run the files); the core never
imports this module.
"""
from __future__ import annotations

import os
import pathlib
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from .controls import EXPOSURE_NOMINAL, EXPOSURE_RANGE, ITERATIONS_DEFAULT, MAX_ITERATIONS

OPSET = 18
EXTRA = "pip install 'napari-lowlight[onnx]'"
INPUT, EXPOSURE, ITERATIONS, OUTPUT = "image", "exposure", "iterations", "enhanced"
# Why a model is not exported (ValueError with this reason).
NOT_EXPORTED = {
    "gamma": "its per-image gamma is fitted by a 40-step bisection on a strided subsample whose stride depends on "
             "the image size; run it with lowlight_core.enhance",
    "clahe": "its per-tile histograms (bincount) and clip-and-redistribute loop depend on the pixel values and "
             "have no standard ONNX form; run it with lowlight_core.enhance",
}


def require_onnx():
    """The onnx module, or ImportError naming the [onnx] extra."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch's exporter needs it)
    except ImportError as e:
        raise ImportError(f"ONNX export needs the [onnx] extra ({e.name} is not installed): {EXTRA}") from None
    return onnx


# ---------------------------------------------------------------- the photo thumbnail as weight matrices

def fit_long_side(H, W, limit: int):
    """models._common.fit_long_side on symbolic sizes: each side * limit / the long side rounded half up, in
    [1, limit], unchanged when the long side is within the limit."""
    long_side = torch.sym_max(H, W)

    def fit(n):
        return torch.sym_max(1, torch.sym_min(torch.sym_min(n, limit), (2 * limit * n + long_side) // (2 * long_side)))
    return fit(H), fit(W)


def thumbnail_matrix(n, out, oversample: int) -> torch.Tensor:
    """(out, n) float32: the weights of models.zero_dce_pp.photo_thumbnail along one axis of n pixels: block means
    onto mid = min(n, oversample * out) cells (reference.area_reduce), then torch's antialiased bilinear resize
    from mid to out cells (triangle filter of half-width max(mid / out, 1), weights normalized per output cell:
    upsampling, it is the bilinear resize with its border clamp)."""
    mid = torch.sym_min(n, oversample * out)
    j = torch.arange(n, dtype=torch.float32)
    c = torch.arange(mid)
    lo, hi = (c * n) // mid, ((c + 1) * n + mid - 1) // mid
    area = ((j >= lo[:, None]) & (j < hi[:, None])).float() / (hi - lo)[:, None].float()
    scale = torch.ones((), dtype=torch.float32) * mid / out
    centre = (torch.arange(out, dtype=torch.float32)[:, None] + 0.5) * scale
    tri = (1 - ((torch.arange(mid, dtype=torch.float32)[None, :] + 0.5 - centre) / scale.clamp_min(1)).abs())
    tri = tri.clamp_min(0)
    return (tri / tri.sum(1, keepdim=True)) @ area


def thumbnail(x: torch.Tensor, size, oversample: int) -> torch.Tensor:
    """models.zero_dce_pp.photo_thumbnail(x, size, oversample) of a float image x (N, 3, H, W) in [0, 1], on
    symbolic sizes: one pass over the image at any size."""
    rows = thumbnail_matrix(x.shape[2], size[0], oversample)
    cols = thumbnail_matrix(x.shape[3], size[1], oversample)
    return rows @ x @ cols.T


# ---------------------------------------------------------------- the exported torch parts

def _plane(t: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
    N, _, h, w = t.shape
    return exposure.clamp(*EXPOSURE_RANGE).to(t.dtype).view(1, 1, 1, 1).expand(N, 1, h, w)


class CurveMaps(nn.Module):
    """A curve model up to its curve maps: (image, exposure) -> (x, base, alpha). x is the clamped image, base what
    the curve steps run on (x, or its value max(r, g, b) for curve_on="value"), alpha the maps at full resolution,
    C * k channels for base's C channels (step i uses maps min(i, k - 1), reference.alpha_map)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        from .models.zero_dce import symmetric_forward
        from .models.zero_dce_pp import THUMBNAIL_OVERSAMPLE

        self.net, self._forward, self._oversample = net, symmetric_forward, THUMBNAIL_OVERSAMPLE
        self.value = net.config.get("curve_on", "rgb") == "value"
        self.limit = net.config.get("estimate_size") if hasattr(net, "estimate_alpha_photo") else None

    def forward(self, image: torch.Tensor, exposure: torch.Tensor):
        x = image.clamp(0, 1)
        t = x if self.limit is None else thumbnail(x, fit_long_side(*x.shape[2:], self.limit), self._oversample)
        inp = torch.cat([t, _plane(t, exposure)], 1) if self.net.config["e_conditioned"] else t
        alpha = self._forward(self.net.convs, inp)
        base = x
        if self.value:  # each step's RGB maps averaged at alpha's own resolution (CurveEstimator.photo_curve)
            alpha, base = alpha.unflatten(1, (-1, 3)).mean(2), x.amax(1, keepdim=True)
        if self.limit is not None:  # low-resolution maps: resized as le_curve does
            alpha = F.interpolate(alpha, size=(x.shape[2], x.shape[3]), mode="bilinear", align_corners=False)
        return x, base, alpha


class ImageNet(nn.Module):
    """An image-to-image network as enhance() runs it on a float image: clamped in, clamped out."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image.clamp(0, 1)).clamp(0, 1)


class PaddedUNet(ImageNet):
    """EnlightenGAN: its input padded to a multiple of 2**depth before the network sees it, as the generator's own
    _pad_to_multiple does (reflect at the bottom and right, edge replication when the image is smaller than the
    pad), but with gathered indices and the padded size written as a multiple, so the export keeps every size
    symbolic (the generator then pads nothing) instead of branching on it."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.clamp(0, 1)
        m, (H, W) = 2 ** self.net.config["depth"], x.shape[2:]
        rows, cols = torch.arange((H + m - 1) // m * m), torch.arange((W + m - 1) // m * m)
        mirror_rows, mirror_cols = 2 * (H - 1) - rows, 2 * (W - 1) - cols
        reflect = (mirror_rows[-1] >= 0) & (mirror_cols[-1] >= 0)  # both pads shorter than the image
        rows = torch.where(rows < H, rows, torch.where(reflect, mirror_rows, H - 1))
        cols = torch.where(cols < W, cols, torch.where(reflect, mirror_cols, W - 1))
        padded = x.index_select(2, rows).index_select(3, cols)
        return self.net(padded)[:, :, :H, :W].clamp(0, 1)


# ---------------------------------------------------------------- the bilateral grid in standard operators

def bilateral_slice(grid: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """reference.bilateral_slice (grid_sample's trilinear interpolation, border padding) in operators that
    export: ONNX's GridSample is 2-D at opset 18. The rows' interpolation depends on the row alone, so it runs
    on the small grid; then four gathers per pixel (two columns x two depths) and their lerps."""
    B, C, D, Gh, Gw = grid.shape
    H, W = g.shape[2], g.shape[3]

    def cells(t, n):  # grid_sample's cell coordinate of t in [-1, 1] on n cells, border-clamped: the cells
        c = (((t + 1) * n - 1) / 2).clamp(0, n - 1)  # below and above it and the weight of the one above
        lo = c.floor()
        return lo.long(), (lo + 1).clamp_max(n - 1).long(), c - lo

    def lerp(a, b, w):  # not torch.lerp: its ONNX form adds a Where per element
        return a + w * (b - a)

    y0, y1, wy = cells((torch.arange(H, dtype=g.dtype) * 2 + 1) / H - 1, Gh)  # pixel centres, as the reference
    x0, x1, wx = cells((torch.arange(W, dtype=g.dtype) * 2 + 1) / W - 1, Gw)
    z0, z1, wz = cells(g[:, 0] * 2 - 1, D)  # (B, H, W)
    rows = lerp(grid.index_select(3, y0), grid.index_select(3, y1), wy.view(H, 1))  # (B, C, D, H, Gw)
    table = rows.permute(0, 2, 3, 4, 1).reshape(-1, C)  # one row of C per (b, z, row, x)
    start = torch.arange(B).view(B, 1, 1) * D * H + torch.arange(H).view(1, H, 1)
    wx, wz = wx.view(W, 1), wz.unsqueeze(-1)

    # (B, H, W, C): whole rows of C gathered (ONNX Gather on axis 0). ONNX Runtime gathers along axis 1 value by
    # value (several times slower at 2 MP), and tensor indexing adds a Where per index (negative ones)
    def at(z, x):
        return table.index_select(0, ((start + z * H) * Gw + x).flatten()).view(B, H, W, C)

    a = lerp(lerp(at(z0, x0), at(z0, x1), wx), lerp(at(z1, x0), at(z1, x1), wx), wz)
    return a.permute(0, 3, 1, 2)


def bilateral_apply(x: torch.Tensor, grid: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """reference.bilateral_apply of a float RGB image x in [0, 1], sliced by bilateral_slice above."""
    from .reference import bilateral_affine, bilateral_guide

    return bilateral_affine(x, bilateral_slice(grid, bilateral_guide(x, guide))).clamp(0, 1)


class BilateralGridNet(nn.Module):
    """The bilateral grid on a float image: (image, exposure) -> enhanced. Its thumbnail is the photo path's,
    enhance_photo's, which lowlight_core.enhance runs (block means at THUMBNAIL_OVERSAMPLE x 256 px, then the
    resize: model.enhance's plain resize up to 1024 px a side, where the block means are the pixels); the grid and
    normalize_exposure are the model's, with the apply above."""

    def __init__(self, net: nn.Module):
        super().__init__()
        from .models.bilateral_grid import THUMBNAIL, THUMBNAIL_OVERSAMPLE

        self.net, self._size, self._oversample = net, (THUMBNAIL, THUMBNAIL), THUMBNAIL_OVERSAMPLE

    def forward(self, image: torch.Tensor, exposure: torch.Tensor) -> torch.Tensor:
        x = image.clamp(0, 1)
        e = exposure.clamp(*EXPOSURE_RANGE).to(x.dtype).expand(x.shape[0])
        grid = self.net.grid_for(thumbnail(x, self._size, self._oversample), e, bilateral_apply)
        return bilateral_apply(x, grid, self.net.guide)


# ---------------------------------------------------------------- the curve steps as an ONNX Loop

def _append_curve(model, value: bool, maps: int) -> None:
    """Appends to the graph of CurveMaps (outputs x, base, alpha) the curve steps
    base <- base + a * base * (1 - base), a = map min(i, maps - 1) of alpha, run `iterations` times, then the
    clamp (and for value models the gain base / max(v, 1e-6) on every channel of x): output `enhanced`."""
    from onnx import TensorProto, helper

    g = model.graph
    channels = 1 if value else 3

    def const(name, value_, dtype=TensorProto.INT64, dims=()):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, dtype, list(dims), [value_]))

    # base + a base (1 - base) as base ((1 + a) - a base): three operators per step instead of four (the loop
    # is most of the graph's time for Zero-DCE++), with 1 + a computed once before the loop
    body_nodes = [helper.make_node("Identity", ["cond_in"], ["cond_out"])]
    step_map, step_map1 = "alpha", "alpha_plus_one"
    if maps > 1:
        step_map, step_map1 = "step_map", "step_map_plus_one"
        body_nodes += [
            const("last_map", maps - 1), const("map_channels", channels, dims=[1]), const("channel_axes", 1, dims=[1]),
            helper.make_node("Min", ["i", "last_map"], ["map_index"]),
            helper.make_node("Mul", ["map_index", "map_channels"], ["map_start"]),  # 1-D: Slice's starts
            helper.make_node("Add", ["map_start", "map_channels"], ["map_end"]),
            helper.make_node("Slice", ["alpha", "map_start", "map_end", "channel_axes"], [step_map]),
            helper.make_node("Slice", ["alpha_plus_one", "map_start", "map_end", "channel_axes"], [step_map1]),
        ]
    body_nodes += [
        helper.make_node("Mul", [step_map, "y_in"], ["lift"]),
        helper.make_node("Sub", [step_map1, "lift"], ["factor"]),
        helper.make_node("Mul", ["y_in", "factor"], ["y_out"]),
    ]
    body = helper.make_graph(
        body_nodes, "curve_step",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("y_out", TensorProto.FLOAT, None)])
    nodes = [
        const("iterations_min", 1), const("iterations_max", MAX_ITERATIONS),
        helper.make_node("Clip", [ITERATIONS, "iterations_min", "iterations_max"], ["trip_count"]),
        const("one", 1.0, TensorProto.FLOAT),
        helper.make_node("Add", ["alpha", "one"], ["alpha_plus_one"]),
        helper.make_node("Constant", [], ["loop_cond"], value=helper.make_tensor("loop_cond", TensorProto.BOOL, [], [True])),
        helper.make_node("Loop", ["trip_count", "loop_cond", "base"], ["curved"], body=body),
        const("unit_lo", 0.0, TensorProto.FLOAT), const("unit_hi", 1.0, TensorProto.FLOAT),
    ]
    if value:
        nodes += [
            const("value_floor", 1e-6, TensorProto.FLOAT),
            helper.make_node("Max", ["base", "value_floor"], ["v_safe"]),  # base is the value v here
            helper.make_node("Div", ["curved", "v_safe"], ["gain"]),
            helper.make_node("Mul", ["x", "gain"], ["scaled"]),
            helper.make_node("Clip", ["scaled", "unit_lo", "unit_hi"], [OUTPUT]),
        ]
    else:
        nodes.append(helper.make_node("Clip", ["curved", "unit_lo", "unit_hi"], [OUTPUT]))
    g.node.extend(nodes)
    g.input.append(helper.make_tensor_value_info(ITERATIONS, TensorProto.INT64, []))
    shape = [d for d in g.input[0].type.tensor_type.shape.dim]
    del g.output[:]
    out = helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, None)
    out.type.tensor_type.shape.dim.extend(shape)
    g.output.append(out)


# ---------------------------------------------------------------- export

def _dims():
    batch = torch.export.Dim("batch", min=1, max=1 << 12)
    height = torch.export.Dim("height", min=1, max=1 << 16)
    width = torch.export.Dim("width", min=1, max=1 << 16)
    return {0: batch, 2: height, 3: width}


def export_onnx(model: str, path: str | os.PathLike, weights: str | os.PathLike | None = None) -> pathlib.Path:
    """Writes `model` (a registered name; `weights`: a weights file instead of the shipped one) to `path` as one
    ONNX file (see the module docstring), checked with onnx.checker. Returns the path."""
    onnx = require_onnx()
    from .models.bilateral_grid import BilateralGrid
    from .models.registry import get_model_info, load_model

    info = get_model_info(model)
    if info.name in NOT_EXPORTED:
        raise ValueError(f"{info.name} cannot be exported to ONNX: {NOT_EXPORTED[info.name]}")
    path = pathlib.Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"the output file must end in .onnx, got {str(path)!r}")
    if path.exists() and not path.is_file():
        raise ValueError(f"{path} exists and is not a file")
    net = load_model(info.name, device="cpu", weights=weights)
    curve = info.kind == "curve"
    module = (CurveMaps(net) if curve else BilateralGridNet(net) if isinstance(net, BilateralGrid)
              else PaddedUNet(net) if "depth" in net.config else ImageNet(net)).eval()  # depth: EnlightenGAN's U-Net
    example = torch.rand(2, 3, 37, 53)  # odd, non-square, batch > 1: no size gets specialized
    args, names, shapes = (example,), [INPUT], (_dims(),)
    if "exposure" in info.controls:
        args, names, shapes = (example, torch.tensor(EXPOSURE_NOMINAL)), [INPUT, EXPOSURE], (_dims(), None)
    outputs = ["x", "base", "alpha"] if curve else [OUTPUT]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, args, dynamo=True, dynamic_shapes=shapes, input_names=names,
                                    output_names=outputs, opset_version=OPSET, optimize=True, verbose=False)
    proto = program.model_proto
    if curve:
        maps = module(*args)[2].shape[1] // (1 if module.value else 3)
        _append_curve(proto, module.value, maps)
    proto.producer_name = "lowlight"
    proto.doc_string = (f"lowlight {info.name}: {info.description}. Inputs: {', '.join(_inputs(info))}; output "
                        f"{OUTPUT} (N x 3 x H x W float32 in [0, 1]).")
    onnx.checker.check_model(proto, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(proto, str(tmp))
    os.replace(tmp, path)
    return path


def _inputs(info) -> list[str]:
    names = [f"{INPUT} (N x 3 x H x W float32 in [0, 1])"]
    if "exposure" in info.controls:
        names.append(f"{EXPOSURE} (float32 scalar, default {EXPOSURE_NOMINAL})")
    if "iterations" in info.controls:
        names.append(f"{ITERATIONS} (int64 scalar, default {ITERATIONS_DEFAULT})")
    return names
