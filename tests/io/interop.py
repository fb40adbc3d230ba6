"""Tensor-level interoperation check between lepton and numpy, using only json + numpy (no safetensors
package). Run by tests/io/test_python_interop.cpp as: python3 interop.py <dir>

1. Reads lepton.safetensors, lepton.npz and lepton_a.npy written by lepton and checks every value.
2. Writes python.safetensors, python.npz, python_c.npz and a few .npy variants for lepton to read.
The expected values are defined identically in the C++ test.
"""
import io
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": "<f4", "F64": "<f8", "I32": "<i4", "I64": "<i8", "U8": "u1"}
NP2ST = {np.dtype(v): k for k, v in DTYPES.items()}


def lepton_expected():
    return {
        "a": (np.arange(6, dtype=np.float32) * np.float32(0.5) - np.float32(1)).reshape(2, 3),
        "b": 1.0 / np.arange(1, 5, dtype=np.float64),
        "c": (np.arange(8, dtype=np.int32) * 7 - 20).reshape(2, 2, 2),
        "d": np.array(-1234567890123, dtype=np.int64),
        "e": np.array([0, 1, 127, 128, 255], dtype=np.uint8),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "fc1.weight": ((np.arange(12) ** 2 % 17) / 8.0 - 1).astype(np.float32).reshape(3, 4),
    }


def python_expected():
    return {
        "p_f32": (np.arange(12, dtype=np.float32) * np.float32(0.25)).reshape(3, 4),
        "p_f64": np.arange(5, dtype=np.float64) / 4,
        "p_i32": (np.arange(6, dtype=np.int32) - 3).reshape(2, 3),
        "p_i64": (np.arange(4, dtype=np.int64) * 10**12).reshape(2, 2, 1),
        "p_u8": np.arange(256, dtype=np.uint8),
        "p_scalar": np.array(3.5, dtype=np.float64),
        "p_empty": np.zeros((2, 0), dtype=np.float32),
    }


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    assert (8 + n) % 8 == 0, "data section is not 8-byte aligned"
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    data = blob[8 + n :]
    meta = header.pop("__metadata__", {})
    out = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=DTYPES[e["dtype"]]).reshape(e["shape"])
        out[name] = arr
    assert max((e["data_offsets"][1] for e in header.values()), default=0) == len(data)
    return out, meta


def write_safetensors(path, tensors, meta):
    header = {"__metadata__": meta}
    chunks = []
    offset = 0
    # data in reverse name order, header in name order: lepton must sort by offsets
    for name in sorted(tensors, reverse=True):
        arr = tensors[name]  # (np.ascontiguousarray would turn a 0-d array into 1-d)
        raw = arr.tobytes(order="C")
        header[name] = {
            "dtype": NP2ST[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    ordered = {"__metadata__": meta}
    ordered.update({k: header[k] for k in sorted(tensors)})
    text = json.dumps(ordered).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


def check_equal(name, got, want):
    if got.dtype != want.dtype or got.shape != want.shape or not np.array_equal(got, want):
        raise AssertionError(f"{name}: got {got.dtype} {got.shape} {got!r}, want {want.dtype} {want.shape} {want!r}")


def main(d):
    exp = lepton_expected()

    tensors, meta = read_safetensors(f"{d}/lepton.safetensors")
    assert meta == {"framework": "lepton", "epoch": "3"}, meta
    assert sorted(tensors) == sorted(exp), sorted(tensors)
    for k, v in exp.items():
        check_equal("safetensors " + k, tensors[k], v)

    with np.load(f"{d}/lepton.npz", allow_pickle=False) as z:
        assert sorted(z.files) == sorted(exp), z.files
        for k, v in exp.items():
            check_equal("npz " + k, z[k], v)

    check_equal("npy a", np.load(f"{d}/lepton_a.npy", allow_pickle=False), exp["a"])
    buf = io.BytesIO()
    np.save(buf, exp["a"])
    with open(f"{d}/lepton_a.npy", "rb") as f:
        assert f.read() == buf.getvalue(), "lepton's .npy differs from numpy.save's bytes"

    p = python_expected()
    write_safetensors(f"{d}/python.safetensors", p, {"source": "numpy", "version": np.__version__})
    np.savez(f"{d}/python.npz", **p)
    np.savez_compressed(f"{d}/python_c.npz", **p)
    np.save(f"{d}/python_fortran.npy", np.asfortranarray(p["p_f32"]))
    np.save(f"{d}/python_be.npy", p["p_f64"].astype(">f8"))
    np.save(f"{d}/python_be_i64.npy", p["p_i64"].astype(">i8"))
    for version in [(2, 0), (3, 0)]:
        with open(f"{d}/python_v{version[0]}.npy", "wb") as f:
            np.lib.format.write_array(f, p["p_i32"], version=version)
    print("interop.py: all lepton files check out; python files written")


if __name__ == "__main__":
    main(sys.argv[1])
