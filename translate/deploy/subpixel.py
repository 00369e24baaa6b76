"""Transposed convolutions of stride 2 rewritten as sub-pixel convolutions in an ONNX graph, for the int8 bundle.

A `ConvTranspose` with stride 2, padding 1 and an output twice its input's size (kernel 4, or kernel 3 with
output_padding 1: the up layers of the U-Net and ResNet generators) equals a 3x3 `Conv` (padding 1) into four times
the channels followed by `DepthToSpace(2, "CRD")`: output pixel (2i + a, 2j + b) of channel c is channel
4c + 2a + b of the convolution at (i, j). Along one axis, output 2i + a takes input i + d through the transposed
kernel's tap k = a + 1 - 2d (d = -1, 0, 1; taps outside the kernel are zero).

onnxruntime has no int8 kernel for ConvTranspose, and its fp32 one is slow: in the int8 U-Net it took 86% of the
time. Rewritten, the up layers become convolutions that quantise like the others (QLinearConv); in fp32 the rewrite
is slower (2.25x the multiply-adds of the zero taps), so only the int8 graph uses it.
"""
from __future__ import annotations

from typing import Dict

import numpy as np


def _attrs(node) -> Dict[str, object]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _qualifies(at: Dict[str, object], w: np.ndarray) -> bool:
    """Stride 2, padding 1, an output twice the input (kernel 4, or 3 with output_padding 1), groups and dilation
    1, 2-D."""
    if w.ndim != 4:
        return False
    kh, kw = w.shape[2:]
    opad = list(at.get("output_padding", [0, 0]))
    return (list(at.get("strides", [1, 1])) == [2, 2] and list(at.get("pads", [0, 0, 0, 0])) == [1, 1, 1, 1]
            and at.get("group", 1) == 1 and list(at.get("dilations", [1, 1])) == [1, 1]
            and "output_shape" not in at and at.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
            and kh in (3, 4) and kw in (3, 4) and kh + opad[0] == 4 and kw + opad[1] == 4)


def subpixel_weights(w: np.ndarray, b: np.ndarray | None) -> tuple:
    """ConvTranspose weights (Cin, Cout, K, K) of stride 2 / padding 1 -> the 3x3 Conv's (4 Cout, Cin, 3, 3) and
    bias (4 Cout,)."""
    cin, cout, kh, kw = w.shape
    k = np.zeros((cout, 2, 2, cin, 3, 3), dtype=w.dtype)
    for a in (0, 1):
        for c in (0, 1):
            for ty in range(3):
                ky = a + 1 - 2 * (ty - 1)
                for tx in range(3):
                    kx = c + 1 - 2 * (tx - 1)
                    if 0 <= ky < kh and 0 <= kx < kw:
                        k[:, a, c, :, ty, tx] = w[:, :, ky, kx].T
    bias = np.repeat(b if b is not None else np.zeros(cout, w.dtype), 4)
    return k.reshape(4 * cout, cin, 3, 3), bias.astype(w.dtype)


def rewrite_transposed_convolutions(model) -> int:
    """Rewrite, in place, every ConvTranspose of `model` (an onnx.ModelProto) that qualifies (stride 2, padding 1,
    output twice the input, groups 1, dilation 1, constant weights); return how many were rewritten."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    used = {}
    for node in graph.node:
        for name in node.input:
            used[name] = used.get(name, 0) + 1
    nodes, count = [], 0
    for node in graph.node:
        if node.op_type != "ConvTranspose" or node.input[1] not in inits:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        has_bias = len(node.input) > 2 and bool(node.input[2])
        if not _qualifies(_attrs(node), w) or (has_bias and node.input[2] not in inits):
            nodes.append(node)
            continue
        b = numpy_helper.to_array(inits[node.input[2]]) if has_bias else None
        k, bias = subpixel_weights(w, b)
        base = f"{node.name or node.output[0]}_subpixel"
        graph.initializer.extend([numpy_helper.from_array(k, f"{base}_w"), numpy_helper.from_array(bias, f"{base}_b")])
        nodes.append(helper.make_node("Conv", [node.input[0], f"{base}_w", f"{base}_b"], [f"{base}_y"],
                                      name=f"{base}_conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("DepthToSpace", [f"{base}_y"], list(node.output), name=f"{base}_d2s",
                                      blocksize=2, mode="CRD"))
        for name in node.input[1:]:
            used[name] -= 1
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    unused = [t for t in graph.initializer if used.get(t.name, 1) == 0]
    for t in unused:  # the transposed kernels no node reads any more
        graph.initializer.remove(t)
    return count
