#!/usr/bin/env python3
"""Build a TensorRT engine from model.onnx ON THE TARGET DEVICE, then check it against PyTorch.

Written by `compress export --format tensorrt`. Needs only the TensorRT Python package (JetPack's
python3-libnvinfer, or NVIDIA's wheels), numpy, and torch *or* cuda-python for GPU buffers.
Settings come from bundle.json; command-line flags override them:

    python3 build_engine.py                      # build model.engine, verify, write build.json
    python3 build_engine.py --precision fp16 --workspace-mb 1024 --no-verify

Exit codes: 0 built (and parity passed), 1 build failed, 2 TensorRT/CUDA missing, 3 parity failed.
Engines only run on the GPU model and TensorRT version that built them.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _path(p):
    return p if os.path.isabs(p) else os.path.join(HERE, p)


def _atomic_write(path, data):
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Buffer:
    def __init__(self, handle, ptr, nbytes):
        self.handle, self.ptr, self.nbytes = handle, ptr, nbytes


class Gpu:
    """Device buffers through torch.cuda, or cuda-python's runtime API when torch is absent."""

    def __init__(self):
        self.torch = None
        self.cudart = None
        try:
            import torch

            if torch.cuda.is_available():
                self.torch = torch
        except ImportError:
            pass
        if self.torch is None:
            try:
                from cuda.bindings import runtime as cudart
            except ImportError:
                try:
                    from cuda import cudart
                except ImportError:
                    cudart = None
            self.cudart = cudart
        if self.torch is None and self.cudart is None:
            raise RuntimeError("no GPU buffer library: install torch with CUDA or cuda-python")

    def _check(self, err):
        code = err[0] if isinstance(err, tuple) else err
        if int(code) != 0:
            raise RuntimeError("CUDA error %s" % (code,))

    def name(self):
        if self.torch is not None:
            return self.torch.cuda.get_device_name(0)
        err, prop = self.cudart.cudaGetDeviceProperties(0)
        self._check(err)
        return prop.name.decode(errors="replace").rstrip("\x00") if isinstance(prop.name, bytes) else str(prop.name)

    def malloc(self, nbytes):
        nbytes = max(int(nbytes), 1)
        if self.torch is not None:
            t = self.torch.empty(nbytes, dtype=self.torch.uint8, device="cuda")
            return Buffer(t, t.data_ptr(), nbytes)
        err, ptr = self.cudart.cudaMalloc(nbytes)
        self._check(err)
        return Buffer(ptr, int(ptr), nbytes)

    def free(self, buf):
        if self.torch is None:
            self.cudart.cudaFree(buf.handle)
        buf.handle = None

    def h2d(self, buf, array):
        import numpy as np

        array = np.ascontiguousarray(array)
        if self.torch is not None:
            buf.handle[: array.nbytes].copy_(self.torch.from_numpy(array.view(np.uint8).reshape(-1)))
            self.torch.cuda.synchronize()
            return
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.cudart.cudaMemcpy(buf.ptr, array.ctypes.data, array.nbytes, kind))

    def d2h(self, array, buf):
        import numpy as np

        if self.torch is not None:
            self.torch.cuda.synchronize()
            array.view(np.uint8).reshape(-1)[:] = buf.handle[: array.nbytes].cpu().numpy()
            return
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.cudart.cudaMemcpy(array.ctypes.data, buf.ptr, array.nbytes, kind))

    def stream(self):
        """(object to synchronize, raw handle for execute_async_v3)."""
        if self.torch is not None:
            s = self.torch.cuda.Stream()
            return s, s.cuda_stream
        err, s = self.cudart.cudaStreamCreate()
        self._check(err)
        return s, int(s)

    def sync(self, stream):
        if self.torch is not None:
            stream.synchronize()
        else:
            self._check(self.cudart.cudaStreamSynchronize(stream))


def build(cfg, trt):
    """Parse model.onnx and build the serialized engine; returns a dict describing the build."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    # int8 "explicit": the Q/DQ ONNX carries the scales (no calibrator); else the fp32 ONNX + calibrator
    explicit = cfg["precision"] == "int8" and cfg.get("int8_mode") == "explicit"
    onnx_path = _path(cfg["qdq_onnx"] if explicit else cfg["onnx"])
    if not parser.parse_from_file(onnx_path):
        errors = []
        for i in range(parser.num_errors):
            e = parser.get_error(i)
            node = e.node_name() if hasattr(e, "node_name") else e.node()
            errors.append("node %s: %s" % (node, e.desc()))
        raise RuntimeError("the TensorRT ONNX parser rejected the model: " + "; ".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(cfg["workspace_mb"]) << 20)
    precision = cfg["precision"]
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    inp = network.get_input(0)
    shape = list(inp.shape)
    profile = None
    if -1 in shape:
        profile = builder.create_optimization_profile()
        dims = lambda b: [b] + [int(d) for d in shape[1:]]  # noqa: E731
        profile.set_shape(inp.name, dims(cfg["min_batch"]), dims(cfg["opt_batch"]), dims(cfg["max_batch"]))
        config.add_optimization_profile(profile)
    calibrator = None
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if not explicit:
            calibrator = make_calibrator(trt, cfg, shape)
            config.int8_calibrator = calibrator
            if profile is not None:
                config.set_calibration_profile(profile)
    dla = None
    if cfg.get("dla_core") is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(cfg["dla_core"])
        if cfg.get("dla_gpu_fallback"):
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        dla = dla_report(network, config, cfg)
        if dla["gpu_fallback"] and not cfg.get("dla_gpu_fallback"):
            raise RuntimeError(
                "%d layer(s) cannot run on the DLA and GPU fallback is off: %s; rebuild with "
                "--dla-gpu-fallback (compress export) or --allow-gpu-fallback here"
                % (len(dla["gpu_fallback"]), ", ".join(x["name"] for x in dla["gpu_fallback"][:10]))
            )
    cache_path = _path(cfg["timing_cache"]) if cfg.get("timing_cache") else None
    cache_bytes = b""
    if cache_path and os.path.isfile(cache_path):
        with open(cache_path, "rb") as fh:
            cache_bytes = fh.read()
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    t0 = time.time()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.time() - t0
    if serialized is None:
        raise RuntimeError("TensorRT could not build the engine (see the log above)")
    engine_path = _path(cfg["engine"])
    _atomic_write(engine_path, bytes(serialized))
    if cache_path:
        _atomic_write(cache_path, bytes(config.get_timing_cache().serialize()))
    if dla is not None:
        dla["engine_layers"] = engine_layers(trt, logger, serialized)
    return {
        "dla": dla,
        "engine": cfg["engine"],
        "sha256": _sha256(engine_path),
        "bytes": os.path.getsize(engine_path),
        "build_seconds": round(seconds, 3),
        "precision": precision,
        "input": inp.name,
        "input_shape": shape,
        "profile": [cfg["min_batch"], cfg["opt_batch"], cfg["max_batch"]] if profile is not None else None,
        "dla_core": cfg.get("dla_core"),
        "timing_cache": cfg.get("timing_cache"),
    }


def dla_report(network, config, cfg):
    """Which network layers the DLA runs and which fall back to the GPU: TensorRT's own answer
    (IBuilderConfig.can_run_on_DLA per layer, with the DLA core and precision configured)."""
    on, off = [], []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        item = {"name": layer.name, "type": str(layer.type).split(".")[-1]}
        (on if config.can_run_on_DLA(layer) else off).append(item)
    return {
        "dla_core": int(cfg["dla_core"]),
        "gpu_fallback_allowed": bool(cfg.get("dla_gpu_fallback")),
        "layers": network.num_layers,
        "on_dla": len(on),
        "gpu_fallback": off,
        "source": "TensorRT IBuilderConfig.can_run_on_DLA, per network layer",
    }


def engine_layers(trt, logger, serialized):
    """The built engine's layers (TensorRT's engine inspector): DLA subgraphs appear as ForeignNode layers."""
    try:
        engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
        info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
        names = [(x.get("Name") if isinstance(x, dict) else str(x)) for x in info.get("Layers", [])]
        return {
            "count": len(names),
            "dla_subgraphs": [n for n in names if "ForeignNode" in str(n)],
            "source": "TensorRT engine inspector (profiling verbosity DETAILED)",
        }
    except Exception as err:  # noqa: BLE001 - the report is extra; the engine is built
        return {"error": str(err)}


def make_calibrator(trt, cfg, shape):
    import numpy as np

    data = np.load(_path(cfg["calib"])).astype(np.float32)
    batch = int(cfg.get("calib_batch", 8))
    gpu = Gpu()

    class NpyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.i = 0
            self.buf = gpu.malloc(batch * data[0].nbytes)

        def get_batch_size(self):
            return batch

        def get_batch(self, names):
            if self.i + batch > len(data):
                return None
            gpu.h2d(self.buf, data[self.i : self.i + batch])
            self.i += batch
            return [self.buf.ptr]

        def read_calibration_cache(self):
            p = _path("calib.cache")
            if os.path.isfile(p):
                with open(p, "rb") as fh:
                    return fh.read()
            return None

        def write_calibration_cache(self, cache):
            _atomic_write(_path("calib.cache"), bytes(cache))

    return NpyCalibrator()


def verify(cfg, trt):
    """Run parity_inputs.npy through the engine and compare with parity_reference.npy (PyTorch)."""
    import numpy as np

    x = np.load(_path(cfg["parity_inputs"])).astype(np.float32)
    ref = np.load(_path(cfg["parity_reference"])).astype(np.float64)
    gpu = Gpu()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    with open(_path(cfg["engine"]), "rb") as fh:
        engine = runtime.deserialize_cuda_engine(fh.read())
    if engine is None:
        raise RuntimeError("the engine does not deserialize on this device")
    ctx = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inp = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT][0]
    out = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT][0]
    static_b = int(engine.get_tensor_shape(inp)[0])
    batches = [static_b] if static_b > 0 else sorted({1, min(4, int(cfg["max_batch"]))})
    stream, handle = gpu.stream()
    results = []
    worst = {"max_abs_err": 0.0, "max_rel_err": 0.0, "top1_agreement": 1.0}
    for b in batches:
        shape = (b,) + tuple(x.shape[1:])
        if static_b <= 0:
            ctx.set_input_shape(inp, shape)
        in_dtype = trt.nptype(engine.get_tensor_dtype(inp))
        out_dtype = trt.nptype(engine.get_tensor_dtype(out))
        out_shape = tuple(ctx.get_tensor_shape(out))
        hi = np.empty(shape, dtype=in_dtype)
        ho = np.empty(out_shape, dtype=out_dtype)
        di = gpu.malloc(hi.nbytes)
        do = gpu.malloc(ho.nbytes)
        ctx.set_tensor_address(inp, di.ptr)
        ctx.set_tensor_address(out, do.ptr)
        n = (len(x) // b) * b
        outs = []
        for i in range(0, n, b):
            hi[...] = x[i : i + b]
            gpu.h2d(di, hi)
            if not ctx.execute_async_v3(handle):
                raise RuntimeError("execute_async_v3 failed")
            gpu.sync(stream)
            gpu.d2h(ho, do)
            outs.append(ho.astype(np.float64).reshape(b, -1).copy())
        y = np.concatenate(outs)
        r = ref[:n].reshape(n, -1)
        abs_err = float(np.max(np.abs(y - r)))
        scale = float(np.max(np.abs(r))) or 1.0
        m = {
            "batch": b,
            "samples": n,
            "max_abs_err": abs_err,
            "max_rel_err": abs_err / scale,
            "top1_agreement": float(np.mean(y.argmax(1) == r.argmax(1))),
        }
        results.append(m)
        worst = {
            "max_abs_err": max(worst["max_abs_err"], m["max_abs_err"]),
            "max_rel_err": max(worst["max_rel_err"], m["max_rel_err"]),
            "top1_agreement": min(worst["top1_agreement"], m["top1_agreement"]),
        }
        gpu.free(di)
        gpu.free(do)
    t = cfg["threshold"]
    passed = worst["max_rel_err"] <= t["max_rel_err"] and worst["top1_agreement"] >= t["min_top1"]
    return dict(worst, passed=passed, threshold=t, per_batch=results, inputs=cfg.get("parity_source", ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="bundle.json")
    ap.add_argument("--onnx")
    ap.add_argument("--engine")
    ap.add_argument("--precision", choices=["fp32", "fp16", "bf16", "int8"])
    ap.add_argument("--workspace-mb", type=int)
    ap.add_argument("--min-batch", type=int)
    ap.add_argument("--opt-batch", type=int)
    ap.add_argument("--max-batch", type=int)
    ap.add_argument("--dla-core", type=int)
    ap.add_argument("--allow-gpu-fallback", action="store_true", help="DLA: let layers the DLA cannot run use the GPU")
    ap.add_argument("--timing-cache")
    ap.add_argument(
        "--int8-mode",
        choices=["explicit", "calibration"],
        help="int8: build model.qdq.onnx (explicit) or model.onnx with calib.npy (calibration)",
    )
    ap.add_argument("--no-verify", action="store_true")
    args = ap.parse_args(argv)
    with open(_path(args.config)) as fh:
        cfg = json.load(fh)
    for key in (
        "onnx",
        "engine",
        "precision",
        "workspace_mb",
        "min_batch",
        "opt_batch",
        "max_batch",
        "dla_core",
        "timing_cache",
        "int8_mode",
    ):
        val = getattr(args, key)
        if val is not None:
            cfg[key] = val
    if args.allow_gpu_fallback:
        cfg["dla_gpu_fallback"] = True
    try:
        import tensorrt as trt
    except ImportError:
        sys.stderr.write(
            "error: TensorRT's Python package is not installed (JetPack: python3-libnvinfer; "
            "x86: pip install tensorrt); or run build_engine.sh with trtexec\n"
        )
        return 2
    record = {
        "schema": 1,
        "tensorrt": trt.__version__,
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": os.uname().nodename,
        "onnx_sha256": _sha256(_path(cfg["onnx"])),
    }
    if record["onnx_sha256"] != cfg.get("onnx_sha256", record["onnx_sha256"]):
        sys.stderr.write("error: model.onnx does not match the sha256 in bundle.json; the bundle was modified\n")
        return 1
    if cfg.get("int8_mode") == "explicit":
        if not cfg.get("qdq_onnx"):
            sys.stderr.write(
                "error: --int8-mode explicit needs model.qdq.onnx (made by compress quantize --runtime tensorrt)\n"
            )
            return 2
        if _sha256(_path(cfg["qdq_onnx"])) != cfg.get("qdq_onnx_sha256"):
            sys.stderr.write(
                "error: model.qdq.onnx does not match the sha256 in bundle.json; the bundle was modified\n"
            )
            return 1
    try:
        record["gpu"] = Gpu().name()
    except Exception as err:  # noqa: BLE001
        sys.stderr.write("error: no usable CUDA GPU: %s\n" % err)
        return 2
    try:
        record["build"] = build(cfg, trt)
    except Exception as err:  # noqa: BLE001
        record["error"] = str(err)
        _atomic_write(_path("build.json"), (json.dumps(record, indent=2) + "\n").encode())
        sys.stderr.write("error: %s\n" % err)
        return 1
    code = 0
    if not args.no_verify and cfg.get("parity_inputs"):
        try:
            record["parity"] = verify(cfg, trt)
        except Exception as err:  # noqa: BLE001
            record["parity"] = {"passed": False, "error": str(err)}
        if not record["parity"].get("passed"):
            code = 3
    _atomic_write(_path("build.json"), (json.dumps(record, indent=2) + "\n").encode())
    dla = (record.get("build") or {}).get("dla")
    if dla:
        sys.stderr.write(
            "DLA core %d: %d of %d layers on the DLA; on the GPU: %s\n"
            % (
                dla["dla_core"],
                dla["on_dla"],
                dla["layers"],
                ", ".join("%s (%s)" % (x["name"], x["type"]) for x in dla["gpu_fallback"]) or "none",
            )
        )
    sys.stderr.write(
        "built %s (%s)%s\n"
        % (
            cfg["engine"],
            record["gpu"],
            "" if "parity" not in record else ", parity " + ("passed" if code == 0 else "FAILED"),
        )
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
