"""TensorRT's documented ONNX operator support, for preflight where TensorRT is not installed.

Sources: onnx-tensorrt ``docs/operators.md`` for TensorRT 10.15 (opset 9-24; the matrix that ships
with TensorRT 10.x) and for TensorRT 8.4 (opset <= 13; used for 8.x). Only plain ``ai.onnx`` ops are
listed; any other domain needs a TensorRT plugin and is reported as unsupported. Per-op
restrictions (e.g. Resize modes) are not checked here: the TensorRT parser checks them at build.

DLA: the layer kinds the DLA runs (TensorRT Developer Guide, "DLA Supported Layers and
Restrictions"), mapped to the ONNX ops that produce them; FP16/INT8 only, static shapes only.
Parameter limits (e.g. pooling windows 1-8, deconvolution kernels) are checked by the builder.
"""

from __future__ import annotations

_T10 = """Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh Attention AveragePool BatchNormalization
BlackmanWindow Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization GRU HammingWindow HannWindow HardSigmoid HardSwish Hardmax Identity If ImageScaler
InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM
LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression
NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin
ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RMSNormalization RNN RoiAlign
RotaryEmbedding Round STFT ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin
Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh TensorScatter
ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor"""

_T8 = """Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu
Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout
Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm GlobalAveragePool
GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GRU HardSigmoid Identity If ImageScaler InstanceNormalization
IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean Min
Mul Neg NonMaxSuppression Not Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomUniform RandomUniformLike
Range ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize ReverseSequence RNN Round ScaledTanh Scan Scatter ScatterElements ScatterND
Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan
Tanh ThresholdedRelu Tile TopK Transpose Unsqueeze Upsample Where Xor"""

# major version -> (source document, max opset, supported ai.onnx ops)
TABLES: dict[int, tuple[str, int, frozenset[str]]] = {
    10: ("onnx-tensorrt docs/operators.md, TensorRT 10.15", 24, frozenset(_T10.split())),
    8: ("onnx-tensorrt docs/operators.md, TensorRT 8.4", 13, frozenset(_T8.split())),
}
MIN_OPSET = 9

# Ops the DLA can run (Constant/Identity are folded away by the builder).
DLA_OPS = frozenset(
    """Conv ConvTranspose Gemm MatMul MaxPool AveragePool GlobalAveragePool GlobalMaxPool Relu Sigmoid
Tanh Clip LeakyRelu PRelu Add Sub Mul Max Min Div Pow Equal Greater Less BatchNormalization LRN Concat Resize Abs Sin
Cos Atan Slice Softmax Reshape Transpose Flatten Squeeze Unsqueeze Identity Constant""".split()
)


def table_for(version: str | None) -> tuple[int, str, int, frozenset[str]]:
    """(major, source, max opset, ops) for a TensorRT version string such as ``10.3.0``; default 10."""
    major = 10
    if version:
        try:
            major = int(str(version).split(".")[0])
        except ValueError:
            major = 10
    key = major if major in TABLES else (10 if major > 10 else 8)
    src, max_opset, ops = TABLES[key]
    return key, src, max_opset, ops
