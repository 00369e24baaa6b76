"""ONNX graph rewrites that give onnxruntime's CPU convolutions the shapes they are fast at, outputs unchanged.

Two layers of the pix2pix/CycleGAN generators run far below the speed of the others on onnxruntime's CPU kernels:

- **Stride-2 transposed convolutions** (the up layers). onnxruntime has no int8 kernel for `ConvTranspose`, and its
  fp32 one is slow. `rewrite_transposed_convolutions` turns each into its four output phases: output pixel
  (2i + a, 2j + b) reads only the taps of one phase, so phase (a, b) is an ordinary convolution over the input with
  just those taps (1x1, 1x2, 2x1 or 2x2 for kernel 3 with output_padding 1, 2x2 for kernel 4), and
  `Concat` + `DepthToSpace(2, "DCR")` interleaves the four. Exactly the transposed convolution's multiply-adds, no
  zero taps, and every part quantises (QLinearConv).
- **Convolutions into a few channels** (the 7x7 output layer into 3 channels at full resolution). onnxruntime
  computes output channels in blocks of 8-16, so 3 channels cost as much as 16. `rewrite_thin_convolutions` computes
  the four output phases of the stride-1 convolution as one stride-2 convolution into four times the channels
  (kernel one larger, phase (a, b)'s taps shifted by (a, b)), then `DepthToSpace(2, "DCR")` and a `Slice` to the
  original size (which may be odd).

Both are exact in real arithmetic (the tests compare them with the original graph and with PyTorch). Measured on
the resnet_9blocks generator at 256 px, one thread (benchmarks/onnx_profile.py, benchmarks/README.md): its output
layer from 58.5 to 19.7 ms in fp32 and from 96.9 to 17.6 ms in int8; its two up layers in int8 from 43.5 ms (as
3x3 sub-pixel convolutions, with a quarter of their taps zero) to 11.4 ms.

`quantize_before_padding` moves, in a quantised graph, the QuantizeLinear after a reflection pad in front of it, so
that the padding copies uint8 instead of float32 (exact: both only copy values). `edge_convolutions` finds the
convolutions next to the input and the output, which the int8 bundle keeps fp32.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

MIN_OPSET = 13  # Slice with axes as an input, DepthToSpace with its mode
THIN = 4  # convolutions into at most this many channels are rewritten (4x them still fits one 16-channel block)


def _attrs(node) -> Dict[str, object]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _plain(at: Dict[str, object]) -> bool:
    """Groups and dilation 1, explicit padding, no output_shape."""
    return (at.get("group", 1) == 1 and list(at.get("dilations", [1, 1])) == [1, 1] and "output_shape" not in at
            and at.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))


def _up_layer(at: Dict[str, object], w: np.ndarray) -> bool:
    """A 2-D ConvTranspose of stride 2, padding 1 and an output twice its input (kernel 4, or 3 with
    output_padding 1)."""
    if w.ndim != 4 or not _plain(at):
        return False
    kh, kw = w.shape[2:]
    opad = list(at.get("output_padding", [0, 0]))
    return (list(at.get("strides", [1, 1])) == [2, 2] and list(at.get("pads", [0, 0, 0, 0])) == [1, 1, 1, 1]
            and kh in (3, 4) and kw in (3, 4) and kh + opad[0] == 4 and kw + opad[1] == 4)


def _thin(at: Dict[str, object], w: np.ndarray) -> bool:
    """A 2-D stride-1 Conv into at most THIN channels with a kernel of at least 3x3."""
    return (w.ndim == 4 and _plain(at) and w.shape[0] <= THIN and min(w.shape[2:]) >= 3
            and list(at.get("strides", [1, 1])) == [1, 1])


def phase_taps(k: int, a: int) -> List[Tuple[int, int]]:
    """(input offset d, kernel tap) pairs that output phase `a` (0 or 1) of a stride-2, padding-1 transposed
    convolution of kernel `k` reads along one axis: output 2i + a takes input i + d through tap a + 1 - 2d."""
    return [(d, a + 1 - 2 * d) for d in (-1, 0, 1) if 0 <= a + 1 - 2 * d < k]


def phase_convolutions(w: np.ndarray) -> List[Tuple[np.ndarray, List[int]]]:
    """ConvTranspose weights (Cin, Cout, K, K') of stride 2 / padding 1 -> for phases (0,0), (0,1), (1,0), (1,1):
    (the Conv weights (Cout, Cin, taps_y, taps_x), its pads [top, left, bottom, right])."""
    kh, kw = w.shape[2:]
    phases = []
    for a in (0, 1):
        for b in (0, 1):
            ty, tx = phase_taps(kh, a), phase_taps(kw, b)
            k = np.stack([np.stack([w[:, :, y, x].T for _, x in tx], -1) for _, y in ty], -2)
            pads = [max(0, -ty[0][0]), max(0, -tx[0][0]), max(0, ty[-1][0]), max(0, tx[-1][0])]
            phases.append((np.ascontiguousarray(k), pads))
    return phases


def phase_stacked_weights(w: np.ndarray) -> np.ndarray:
    """Stride-1 Conv weights (Cout, Cin, K, K') -> the stride-2 Conv's (4 Cout, Cin, K + 1, K' + 1) whose output
    channel (2a + b) Cout + o is output phase (a, b) of channel o (DepthToSpace "DCR" order)."""
    cout, cin, kh, kw = w.shape
    k = np.zeros((2, 2, cout, cin, kh + 1, kw + 1), dtype=w.dtype)
    for a in (0, 1):
        for b in (0, 1):
            k[a, b, :, :, a:a + kh, b:b + kw] = w
    return k.reshape(4 * cout, cin, kh + 1, kw + 1)


def rewrite_transposed_convolutions(model) -> int:
    """Rewrite, in place, every ConvTranspose of `model` (an onnx.ModelProto) that `_up_layer` accepts (constant
    weights) as its four phase convolutions; return how many were rewritten."""
    from onnx import helper, numpy_helper

    def rewrite(node, w, b, add):
        base, outs = node.name or node.output[0], []
        bias = b if b is not None else np.zeros(w.shape[1], w.dtype)
        for (k, pads), (a, c) in zip(phase_convolutions(w), ((0, 0), (0, 1), (1, 0), (1, 1))):
            name = f"{base}_phase{a}{c}"
            add.initializer(numpy_helper.from_array(k, f"{name}_w"), numpy_helper.from_array(bias, f"{name}_b"))
            add.node(helper.make_node("Conv", [node.input[0], f"{name}_w", f"{name}_b"], [f"{name}_y"], name=name,
                                      kernel_shape=list(k.shape[2:]), pads=pads))
            outs.append(f"{name}_y")
        add.node(helper.make_node("Concat", outs, [f"{base}_phases"], name=f"{base}_concat", axis=1))
        add.node(helper.make_node("DepthToSpace", [f"{base}_phases"], list(node.output), name=f"{base}_d2s",
                                  blocksize=2, mode="DCR"))

    return _rewrite(model, "ConvTranspose", _up_layer, rewrite)


def rewrite_thin_convolutions(model) -> int:
    """Rewrite, in place, every Conv of `model` that `_thin` accepts (constant weights) as one stride-2 convolution
    of its four output phases + DepthToSpace + Slice; return how many were rewritten."""
    from onnx import helper, numpy_helper

    def rewrite(node, w, b, add):
        base = node.name or node.output[0]
        kh, kw = w.shape[2:]
        pt, pl, pb, pr = list(_attrs(node).get("pads", [0, 0, 0, 0]))
        bias = np.tile(b if b is not None else np.zeros(w.shape[0], w.dtype), 4)
        add.initializer(numpy_helper.from_array(phase_stacked_weights(w), f"{base}_phases_w"),
                        numpy_helper.from_array(bias, f"{base}_phases_b"),
                        numpy_helper.from_array(np.array([2], np.int64), f"{base}_two"),
                        numpy_helper.from_array(np.array([4], np.int64), f"{base}_four"),
                        numpy_helper.from_array(np.array([pt + pb - kh + 1, pl + pr - kw + 1], np.int64),
                                                f"{base}_grow"),
                        numpy_helper.from_array(np.array([0, 0], np.int64), f"{base}_zeros"),
                        numpy_helper.from_array(np.array([2, 3], np.int64), f"{base}_axes"))
        # one extra row and column of zeros at the end: the phases' rows come in pairs, the original's may be odd
        add.node(helper.make_node("Conv", [node.input[0], f"{base}_phases_w", f"{base}_phases_b"], [f"{base}_phases"],
                                  name=f"{base}_phases", kernel_shape=[kh + 1, kw + 1], strides=[2, 2],
                                  pads=[pt, pl, pb + 1, pr + 1]))
        add.node(helper.make_node("DepthToSpace", [f"{base}_phases"], [f"{base}_even"], name=f"{base}_d2s",
                                  blocksize=2, mode="DCR"))
        # the original output size: input size + padding - kernel + 1, from the input's shape (dynamic sizes too)
        add.node(helper.make_node("Shape", [node.input[0]], [f"{base}_shape"], name=f"{base}_shape"))
        add.node(helper.make_node("Slice", [f"{base}_shape", f"{base}_two", f"{base}_four"], [f"{base}_size"],
                                  name=f"{base}_size"))
        add.node(helper.make_node("Add", [f"{base}_size", f"{base}_grow"], [f"{base}_end"], name=f"{base}_end"))
        add.node(helper.make_node("Slice", [f"{base}_even", f"{base}_zeros", f"{base}_end", f"{base}_axes"],
                                  list(node.output), name=f"{base}_crop"))

    return _rewrite(model, "Conv", _thin, rewrite)


def _readers(graph) -> Dict[str, List[int]]:
    """Each tensor name -> the indices of the nodes of `graph` that read it (once per input slot)."""
    readers: Dict[str, List[int]] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            readers.setdefault(name, []).append(i)
    return readers


class _Additions:
    def __init__(self, graph):
        self.graph, self.nodes = graph, []

    def initializer(self, *tensors) -> None:
        self.graph.initializer.extend(tensors)

    def node(self, node) -> None:
        self.nodes.append(node)


def _rewrite(model, op_type: str, qualifies, rewrite) -> int:
    """Replace each `op_type` node of `model` with constant weights (and bias) that `qualifies(attrs, weights)` by
    the nodes `rewrite(node, weights, bias or None, additions)` adds; drop the initializers no node reads any more."""
    from onnx import numpy_helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        return 0
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    used = {name: len(nodes) for name, nodes in _readers(graph).items()}
    add, count = _Additions(graph), 0
    for node in list(graph.node):
        has_bias = len(node.input) > 2 and bool(node.input[2])
        if (node.op_type != op_type or node.input[1] not in inits or (has_bias and node.input[2] not in inits)
                or not qualifies(_attrs(node), numpy_helper.to_array(inits[node.input[1]]))):
            add.node(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        rewrite(node, w, numpy_helper.to_array(inits[node.input[2]]) if has_bias else None, add)
        for name in node.input[1:]:
            used[name] -= 1
        count += 1
    del graph.node[:]
    graph.node.extend(add.nodes)
    for t in [t for t in graph.initializer if used.get(t.name, 1) == 0]:  # the replaced weights no node reads
        graph.initializer.remove(t)
    return count


def quantize_before_padding(model) -> int:
    """In a quantised graph, move each QuantizeLinear that follows a reflection or edge Pad in front of it, in place:
    the same values (padding copies values, quantisation maps each one alone), padded in uint8 at a quarter of the
    bytes. A Pad whose output other nodes than that QuantizeLinear and Shape nodes read is left as it is. Returns
    how many moved."""
    from onnx import helper

    graph = model.graph
    constants = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    readers = _readers(graph)
    replace: Dict[int, list] = {}
    drop = set()
    for i, pad in enumerate(graph.node):
        if pad.op_type != "Pad" or _attrs(pad).get("mode", b"constant") not in (b"reflect", b"edge"):
            continue
        after = readers.get(pad.output[0], [])
        quant = [j for j in after if graph.node[j].op_type == "QuantizeLinear"]
        if (len(quant) != 1 or pad.output[0] in outputs
                or any(graph.node[j].op_type not in ("QuantizeLinear", "Shape") for j in after)
                or not set(graph.node[quant[0]].input[1:]) <= constants):
            continue
        q = graph.node[quant[0]]
        unpadded = f"{q.output[0]}_unpadded"
        replace[i] = [helper.make_node("QuantizeLinear", [pad.input[0], *q.input[1:]], [unpadded],
                                       name=f"{q.name or q.output[0]}_unpadded", **_attrs(q)),
                      helper.make_node("Pad", [unpadded, *pad.input[1:]], list(q.output), name=pad.name,
                                       **_attrs(pad))]
        drop.add(quant[0])
        for j in after:
            if graph.node[j].op_type == "Shape":
                graph.node[j].input[0] = q.output[0]
    nodes = []
    for i, node in enumerate(graph.node):
        if i not in drop:
            nodes.extend(replace.get(i, [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    return len(replace)


def edge_convolutions(model) -> List[str]:
    """The names of the Conv nodes of `model` (an onnx.ModelProto) that the input reaches, or that reach an
    output, through no other Conv (the first layer, the last layer's phases); nodes without a name get one. A Shape
    node reads a size, not values: the search does not pass it."""
    graph = model.graph
    for i, node in enumerate(graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    readers = _readers(graph)
    made = {name: i for i, node in enumerate(graph.node) for name in node.output}

    def reach(start: List[str], nodes_of, onward) -> set:
        found, seen, todo = set(), set(), list(start)
        while todo:
            for i in nodes_of(todo.pop()):
                node = graph.node[i]
                if i in seen or node.op_type == "Shape":
                    continue
                seen.add(i)
                if node.op_type == "Conv":
                    found.add(node.name)
                else:
                    todo.extend(onward(node))
        return found

    into = reach([t.name for t in graph.input], lambda name: readers.get(name, []), lambda node: node.output)
    out_of = reach([t.name for t in graph.output], lambda name: [made[name]] if name in made else [],
                   lambda node: node.input)
    return sorted(into | out_of)
