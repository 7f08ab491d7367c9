"""What TensorRT's ONNX parser accepts, for a CPU-side check of our graphs (no TensorRT needed).

Source: onnx/onnx-tensorrt ``docs/operators.md``, the revision for TensorRT 10.15 ("supports
operators in the inclusive range of opset 9 to opset 24"; data types DOUBLE, FLOAT32, FLOAT16,
BFLOAT16, FP8, FP4, INT32, INT64, INT8, INT4, UINT8, BOOL; INT8/INT4/FP8/FP4 only through
quantization, UINT8 only as network I/O). Only rows marked "Y" are listed, with their
"Supported Types" column; the restrictions that can bite our graphs are in
:data:`CONSTANT_INPUTS`. TensorRT 8.6-10.x all parse opset 18 and LayerNormalization.
"""
from __future__ import annotations

SOURCE = "https://github.com/onnx/onnx-tensorrt/blob/main/docs/operators.md (TensorRT 10.15 revision)"
OPSET_RANGE = (9, 24)
#: ONNX element types (``onnx.TensorProto`` names) TensorRT computes in (quantized types left out).
DATA_TYPES = frozenset({"DOUBLE", "FLOAT", "FLOAT16", "BFLOAT16", "INT32", "INT64", "BOOL"})

_F = "FP32 FP16 BF16"
_FI = "FP32 FP16 BF16 INT32 INT64"
_FIB = "FP32 FP16 BF16 INT32 INT64 BOOL"
_TABLE = {
    "Abs": _FI, "Acos": _F, "Acosh": _F, "Add": _FI, "And": "BOOL", "ArgMax": _FI, "ArgMin": _FI,
    "Asin": _F, "Asinh": _F, "Atan": _F, "Atanh": _F, "Attention": _F, "AveragePool": _F,
    "BatchNormalization": _F, "BlackmanWindow": "FP32 FP16", "Cast": "FP32 FP16 BF16 INT32 INT64 UINT8 BOOL",
    "CastLike": "FP32 FP16 BF16 INT32 INT64 UINT8 BOOL", "Ceil": _F, "Celu": _F, "Clip": _F, "Concat": _FIB,
    "Constant": _FIB, "ConstantOfShape": _FIB, "Conv": _F, "ConvTranspose": _F, "Cos": _F, "Cosh": _F,
    "CumSum": _F, "DeformConv": "FP32 FP16", "DepthToSpace": _FI, "Div": _FI, "Dropout": _F, "Einsum": _F,
    "Elu": _F, "Equal": _FI, "Erf": _F, "Exp": _F, "Expand": _FIB, "EyeLike": _FIB, "Flatten": _FIB,
    "Floor": _F, "Gather": _FIB, "GatherElements": _FIB, "GatherND": _FIB, "Gelu": _FI, "Gemm": _F,
    "GlobalAveragePool": _F, "GlobalLpPool": _F, "GlobalMaxPool": _F, "Greater": _FI, "GreaterOrEqual": _FI,
    "GridSample": "FP32 FP16", "GroupNormalization": _F, "GRU": _F, "HammingWindow": "FP32 FP16",
    "HannWindow": "FP32 FP16", "HardSigmoid": _F, "HardSwish": _F, "Hardmax": _F, "Identity": _FIB, "If": _FIB,
    "ImageScaler": _F, "InstanceNormalization": _F, "IsInf": _F, "IsNaN": _FI, "LayerNormalization": _F,
    "LeakyRelu": _F, "Less": _FI, "LessOrEqual": _FI, "Log": _F, "LogSoftmax": _F, "Loop": _FIB, "LRN": _F,
    "LSTM": _F, "LpNormalization": _F, "LpPool": _F, "MatMul": _F, "Max": _FI, "MaxPool": _F, "Mean": _FI,
    "MeanVarianceNormalization": _F, "Min": _FI, "Mish": "FP32 FP16", "Mod": _FI, "Mul": _FI, "Neg": _FI,
    "NonMaxSuppression": "FP32 FP16", "NonZero": "FP32 FP16", "Not": "BOOL", "OneHot": _FIB, "Or": "BOOL",
    "Pad": _FI, "ParametricSoftplus": _F, "Pow": _FI, "PRelu": _F, "QuantizeLinear": _F, "RandomNormal": _F,
    "RandomNormalLike": _F, "RandomUniform": _F, "RandomUniformLike": _F, "Range": _FI, "Reciprocal": _F,
    "ReduceL1": _FI, "ReduceL2": _FI, "ReduceLogSum": _FI, "ReduceLogSumExp": _FI, "ReduceMax": _FI,
    "ReduceMean": _FI, "ReduceMin": _FI, "ReduceProd": _FI, "ReduceSum": _FI, "ReduceSumSquare": _FI,
    "Relu": _FI, "Reshape": _FIB, "Resize": _F, "ReverseSequence": _FIB, "RMSNormalization": _F, "RNN": _F,
    "RoiAlign": "FP32 FP16", "RotaryEmbedding": _F, "Round": _F, "STFT": "FP32", "ScaledTanh": _F, "Scan": _F,
    "Scatter": _FI, "ScatterElements": _FI, "ScatterND": _FI, "Selu": _F, "Shape": _FIB, "Shrink": _FI,
    "Sigmoid": _F, "Sign": _FI, "Sin": _F, "Sinh": _F, "Size": _FIB, "Slice": _FIB, "Softmax": _F,
    "Softplus": _F, "Softsign": _F, "SpaceToDepth": _FI, "Split": _FIB, "Sqrt": _F, "Squeeze": _FIB,
    "Sub": _FI, "Sum": _FI, "Tan": _F, "Tanh": _F, "ThresholdedRelu": _F, "Tile": _FIB, "TopK": _FI,
    "Transpose": _FIB, "Trilu": _FIB, "Unsqueeze": _FIB, "Upsample": _F, "Where": _FIB, "Xor": "BOOL",
}
_NAMES = {"FP32": "FLOAT", "FP16": "FLOAT16", "BF16": "BFLOAT16", "INT32": "INT32", "INT64": "INT64",
          "UINT8": "UINT8", "BOOL": "BOOL"}
#: op → the element types (``onnx.TensorProto`` names) of its data input TensorRT supports.
SUPPORTED_OPS: dict[str, frozenset[str]] = {op: frozenset(_NAMES[t] for t in types.split()) for op, types in _TABLE.items()}
#: op → input positions that must be build-time constants ("axes must be an initializer" etc.).
CONSTANT_INPUTS: dict[str, tuple[int, ...]] = {
    **{op: (1,) for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                           "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Squeeze", "Unsqueeze", "CumSum")},
}
#: Where the data input is not input 0.
DATA_INPUT = {"Where": 1}


def unsupported(model) -> list[str]:
    """Problems TensorRT's ONNX parser would have with ``model`` (an ``onnx.ModelProto``): ops it
    lacks, element types outside its lists, non-constant ``axes`` inputs, an opset out of range.
    Returns [] when every node passes."""
    import onnx

    problems = []
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        problems.append(f"opset {opset} outside {OPSET_RANGE}")
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    constants = {t.name for t in g.initializer}
    types.update({t.name: t.data_type for t in g.initializer})
    for node in g.node:
        if node.op_type == "Constant":
            constants.update(node.output)
    name = onnx.TensorProto.DataType.Name
    for node in g.node:
        where = f"{node.op_type} node {node.name!r}"
        if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
            problems.append(f"{where}: operator not supported")
            continue
        data = node.input[DATA_INPUT.get(node.op_type, 0)] if node.input else ""
        if data and data in types and name(types[data]) not in SUPPORTED_OPS[node.op_type]:
            problems.append(f"{where}: input type {name(types[data])} not in {sorted(SUPPORTED_OPS[node.op_type])}")
        for i in CONSTANT_INPUTS.get(node.op_type, ()):
            if i < len(node.input) and node.input[i] and node.input[i] not in constants:
                problems.append(f"{where}: input {i} must be a build-time constant")
        for t in list(node.input) + list(node.output):
            if t in types and types[t] and name(types[t]) not in DATA_TYPES:
                problems.append(f"{where}: tensor {t!r} has type {name(types[t])}")
    return problems
