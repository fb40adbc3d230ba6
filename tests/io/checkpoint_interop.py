"""A lepton checkpoint, read from Python with only json + numpy (and the standard library).

Run by tests/io/test_checkpoint_interop.cpp as: python3 checkpoint_interop.py <dir> <fashion-mnist dir>

1. Reads <dir>/mlp.safetensors (a checkpoint of the 784-256-128-10 MLP of examples/fashion_mnist_mlp,
   trained a few Adam steps) by hand and checks its layout: parameters under their reflected names,
   Adam's moments as optim.m.* / optim.v.*, the step count, the training position.
2. Decodes the first 16 test images from the IDX files and normalises them as lepton does
   (fashion_mnist(dir, split::test, {.normalize = true})), recomputes the logits in float64 with lepton's
   weight layout (in, out): y = x W + b, and compares them with lepton's (lepton_logits.npy) to 1e-5.
3. Writes python_model.safetensors by hand (every parameter times -0.5, tensors in reverse order) and
   python_logits.npy (that model's logits), which lepton then loads and checks.
Exits 0 when everything matches; prints what differs otherwise.
"""
import gzip
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8", "U8": "u1"}
LAYERS = [("fc1", 784, 256), ("fc2", 256, 128), ("fc3", 128, 10)]
MEAN, STDDEV = 0.2860406, 0.3530242  # lepton::data::fashion_mnist_mean / _stddev


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    data = blob[8 + n :]
    meta = header.pop("__metadata__", {})
    tensors, end = {}, 0
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        begin, stop = e["data_offsets"]
        assert begin == end, f"{name}: data is not contiguous"
        end = stop
        tensors[name] = np.frombuffer(data[begin:stop], dtype=DTYPES[e["dtype"]]).reshape(e["shape"])
    assert end == len(data), "header and data do not fill the file"
    return tensors, meta, list(header)


def write_safetensors(path, tensors, meta):
    header, chunks, offset = {"__metadata__": meta}, [], 0
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<")))
        st = [k for k, v in DTYPES.items() if np.dtype(v) == arr.dtype][0]
        header[name] = {"dtype": st, "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        chunks.append(arr.tobytes())
        offset += arr.nbytes
    text = json.dumps(header).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def read_idx(path):
    with gzip.open(path, "rb") as f:
        blob = f.read()
    zero, kind, ndim = struct.unpack(">HBB", blob[:4])
    assert zero == 0 and kind == 0x08, f"{path}: not an unsigned-byte IDX file"
    dims = struct.unpack(">" + "I" * ndim, blob[4 : 4 + 4 * ndim])
    return np.frombuffer(blob[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


def normalised(pixels):
    # lepton: x * (1 / (255 * stddev)) - mean / stddev, in float32
    scale = np.float32(1.0) / (np.float32(255.0) * np.float32(STDDEV))
    shift = np.float32(MEAN) / np.float32(STDDEV)
    return pixels.reshape(len(pixels), 784).astype(np.float32) * scale - shift


def mlp_logits(p, x):
    h = x.astype(np.float64)
    for i, (name, _, _) in enumerate(LAYERS):
        h = h @ p[name + ".weight"].astype(np.float64) + p[name + ".bias"].astype(np.float64)
        if i + 1 < len(LAYERS):
            h = np.maximum(h, 0.0)
    return h


def main(out_dir, data_dir):
    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)

    t, meta, order = read_safetensors(os.path.join(out_dir, "mlp.safetensors"))
    check(meta.get("format") == "lepton.checkpoint", f"format metadata: {meta}")
    check(meta.get("format_version") == "1", f"format_version: {meta}")
    check(meta.get("optimizer_state") == "m,v", f"optimizer_state: {meta}")
    params = {}
    for name, fan_in, fan_out in LAYERS:
        for part, shape in (("weight", (fan_in, fan_out)), ("bias", (fan_out,))):
            key = f"{name}.{part}"
            for prefix in ("", "optim.m.", "optim.v."):
                a = t.get(prefix + key)
                check(a is not None and a.dtype == np.float32 and a.shape == shape,
                      f"{prefix + key}: {None if a is None else (a.dtype, a.shape)}, expected float32 {shape}")
            params[key] = t[key]
            check(np.all(t["optim.v." + key] >= 0), f"optim.v.{key} has negative entries")
    check(order[:6] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"],
          f"parameter order {order[:6]}")
    step = int(t["optim.step"])
    check(t["optim.step"].shape == () and step == 4 and str(step) == meta.get("step"), f"optim.step {step}")
    check(int(t["train.epoch"]) == 1 and int(t["train.seed"]) == 1, "train.epoch / train.seed")
    check(t["train.rng_calls"].shape == (0,), "the MLP has no dropout layer")
    check(abs(float(t["optim.lr"]) - 1e-3) < 1e-15, f"optim.lr {float(t['optim.lr'])}")
    check(np.any(t["optim.m.fc1.weight"] != 0), "Adam's first moment is all zeros")

    images = read_idx(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz"))
    x = normalised(images[:16])
    x_lepton = np.load(os.path.join(out_dir, "lepton_inputs.npy"))
    check(x_lepton.shape == (16, 784), f"lepton_inputs shape {x_lepton.shape}")
    dx = float(np.max(np.abs(x - x_lepton)))
    check(dx <= 1e-6, f"inputs differ from lepton's by {dx}")

    ref = mlp_logits(params, x)
    got = np.load(os.path.join(out_dir, "lepton_logits.npy"))
    check(got.shape == (16, 10) and got.dtype == np.float32, f"lepton_logits {got.shape} {got.dtype}")
    err = float(np.max(np.abs(got - ref) / np.maximum(1.0, np.abs(ref))))
    check(err <= 1e-5, f"logits differ from lepton's by {err} (relative)")
    print(f"inputs match to {dx:.2e}, logits to {err:.2e} (largest |logit| {np.max(np.abs(ref)):.3f})")

    # the other way: a model file written by hand, which lepton loads
    mine = {k: (v * np.float32(-0.5)).astype(np.float32) for k, v in params.items()}
    write_safetensors(os.path.join(out_dir, "python_model.safetensors"), list(reversed(list(mine.items()))),
                      {"source": "numpy"})
    np.save(os.path.join(out_dir, "python_logits.npy"), mlp_logits(mine, x).astype(np.float32))

    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
