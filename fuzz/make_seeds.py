#!/usr/bin/env python3
"""Writes the seed corpora of lepton's fuzz targets: small valid files of every kind the loaders
read, and hostile ones (huge or overflowing dimensions, negative or overflowing sizes, lying
lengths, truncated, bad magic, wrong versions, trailing bytes, zip and gzip tricks).

    python3 fuzz/make_seeds.py            # rewrites fuzz/corpus/<target>/ (standard library only)

The output is checked in (about 100 KB); rerun after changing this script. Files are named after
what they hold, so a crash on a seed reads well in a log.
"""
import gzip
import json
import math
import os
import shutil
import struct
import sys
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def emit(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes(data))


# ------------------------------------------------------------------ IDX
IDX_FMT = {0x08: "B", 0x09: "b", 0x0B: ">h", 0x0C: ">i", 0x0D: ">f", 0x0E: ">d"}


def idx(type_byte, dims, values=None, ndims=None):
    head = bytes([0, 0, type_byte, len(dims) if ndims is None else ndims])
    head += b"".join(struct.pack(">I", d) for d in dims)
    if values is None:
        return head
    fmt = IDX_FMT[type_byte]
    body = b"".join(struct.pack(fmt if fmt.startswith(">") else ">" + fmt, v) for v in values)
    return head + body


def gz(data, mtime=0):
    return gzip.compress(data, mtime=mtime)


def idx_seeds():
    labels = idx(0x08, [10], list(range(10)))
    images = idx(0x08, [3, 28, 28], [(i * 7) % 256 for i in range(3 * 28 * 28)])
    valid = {
        "u8_labels": labels,
        "u8_images_3x28x28": images,
        "i8_2x3": idx(0x09, [2, 3], [-128, -1, 0, 1, 2, 127]),
        "i16_4": idx(0x0B, [4], [-32768, -1, 0, 32767]),
        "i32_2x2": idx(0x0C, [2, 2], [-(2**31), -1, 0, 2**31 - 1]),
        "f32_5": idx(0x0D, [5], [0.0, -1.5, 3e38, float("inf"), float("nan")]),
        "f32_big_for_int": idx(0x0D, [2], [1e10, -1e10]),
        "f64_3": idx(0x0E, [3], [1e300, -0.0, float("-inf")]),
        "f64_1x1x1x1": idx(0x0E, [1, 1, 1, 1], [2.5]),
        "zero_count": idx(0x08, [0, 28, 28], []),
    }
    hostile = {
        "huge_dims_u32max": idx(0x08, [0xFFFFFFFF, 0xFFFFFFFF]),
        "overflow_64bit": idx(0x0E, [0xFFFFFFFF] * 4),
        "overflow_after_elem_size": idx(0x0E, [0x40000000, 0x40000000, 0x10]),
        "huge_but_fits": idx(0x08, [60000, 28, 28]),
        "rank0": bytes([0, 0, 8, 0]),
        "rank255": bytes([0, 0, 8, 255]) + b"\0" * 16,
        "rank9": idx(0x08, [1] * 9, [5]),
        "bad_magic": bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]),
        "bad_magic2": bytes([0, 1, 8, 1, 0, 0, 0, 1, 5]),
        "bad_type_0a": bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 5]),
        "header_cut": bytes([0, 0, 8, 3, 0, 0, 0, 3, 0, 0]),
        "data_cut": labels[:-3],
        "extra_bytes": labels + b"\x00\x01",
        "empty": b"",
        "one_byte": b"\x00",
        "three_bytes": b"\x00\x00\x08",
        "gzip_magic_only": b"\x1f\x8b",
    }
    for k, v in valid.items():
        emit("idx", k, v)
    for k, v in hostile.items():
        emit("idx", "bad_" + k if not k.startswith("bad") else k, v)
    # gzip variants for the same target (read_idx detects gzip from 1f 8b)
    emit("idx", "gz_u8_labels", gz(labels))
    emit("idx", "gz_u8_images", gz(images))
    emit("idx", "gz_f32_5", gz(valid["f32_5"]))
    emit("idx", "gz_bad_huge_dims", gz(hostile["huge_dims_u32max"]))
    emit("idx", "gz_bad_claims_60000_images", gz(hostile["huge_but_fits"]))
    emit("idx", "gz_bad_truncated", gz(images)[:-20])
    emit("idx", "gz_bad_trailer_cut", gz(labels)[:-2])
    t = bytearray(gz(labels))
    t[-4:] = struct.pack("<I", 0xFFFFFFF0)
    emit("idx", "gz_bad_isize", t)
    t = bytearray(gz(labels))
    t[-8] ^= 0xFF
    emit("idx", "gz_bad_crc", t)
    emit("idx", "gz_bad_two_members", gz(labels) + gz(labels))
    emit("idx", "gz_bad_trailing_garbage", gz(labels) + b"junk")
    emit("idx", "gz_bad_extra_data", gz(labels + b"\x01\x02"))
    # a gzip bomb: 1 MiB of zeros behind a header claiming it (above the fuzz cap of 1 MiB)
    emit("idx", "gz_bad_bomb_over_cap", gz(idx(0x08, [1024, 1025]) + b"\0" * (1024 * 1025)))
    # nested: gzip of gzip
    emit("idx", "gz_bad_nested", gz(gz(labels)))

    # idx_gzip: byte 0 = fault | level << 3, byte 1 = parameter, then raw IDX content
    for i, (k, v) in enumerate(list(valid.items())[:6]):
        for fault in range(6):
            emit("idx_gzip", "%s_fault%d" % (k, fault), bytes([fault | ((6 + i) % 10) << 3, 37 * fault + 11]) + v)
    for k in ["huge_dims_u32max", "overflow_64bit", "rank0", "bad_type_0a", "data_cut", "extra_bytes"]:
        emit("idx_gzip", "bad_" + k, bytes([0 | 6 << 3, 0]) + hostile[k])

    # mnist: bytes 0-1 = labels length (LE), byte 2 = normalize flag, labels file, images file
    lab2 = idx(0x08, [3], [0, 9, 4])
    def pair(lbl, img, flag=0):
        return struct.pack("<H", len(lbl)) + bytes([flag]) + lbl + img
    emit("mnist", "valid_3", pair(lab2, images))
    emit("mnist", "valid_3_normalize", pair(lab2, images, 1))
    emit("mnist", "valid_3_gz", pair(gz(lab2), gz(images)))
    emit("mnist", "valid_0", pair(idx(0x08, [0], []), idx(0x08, [0, 28, 28], [])))
    emit("mnist", "bad_label_10", pair(idx(0x08, [3], [0, 10, 4]), images))
    emit("mnist", "bad_count_mismatch", pair(idx(0x08, [2], [0, 1]), images))
    emit("mnist", "bad_27x28", pair(lab2, idx(0x08, [3, 27, 28], [0] * (3 * 27 * 28))))
    emit("mnist", "bad_labels_i32", pair(idx(0x0C, [3], [0, 1, 2]), images))
    emit("mnist", "bad_labels_2d", pair(idx(0x08, [3, 1], [0, 1, 2]), images))
    emit("mnist", "bad_images_f32", pair(lab2, idx(0x0D, [3, 28, 28], [0.5] * (3 * 784))[:200]))
    emit("mnist", "bad_swapped", pair(images, lab2))


# ------------------------------------------------------------------ CSV
def csv_seeds():
    # byte 0: bit 0 header, bits 1-3 delimiter (, ; \t space | , ; "), bits 4-5 target
    # (last, first, none, by name "y"), bit 6 quote (" or ')
    H, LAST, FIRST, NONE, NAME = 1, 0 << 4, 1 << 4, 2 << 4, 3 << 4
    def c(flags, text):
        return bytes([flags]) + text.encode("latin-1")
    seeds = {
        "header_last": c(H | LAST, "a,b,y\n1,2,0\n3,4.5,1\n-1e3,+7,2\n"),
        "header_by_name": c(H | NAME, "x1,y,x2\n1,0,2\n3,1,4\n"),
        "no_header_first": c(FIRST, "0,1,2\r\n1,3,4\r\n"),
        "no_target": c(H | NONE, "a,b\n1,2\n"),
        "semicolon": c(H | (1 << 1), "a;b;y\n1;2;3\n"),
        "tab": c(H | (2 << 1), "a\tb\ty\n1\t2\t3\n"),
        "space": c(H | (3 << 1), "a b y\n1 2 3\n"),
        "quoted": c(H, '"a,1","b ""q""\nline 2",y\n"1",2,"3"\n " 4 " ,5,6\n'),
        "single_quote": c(H | 64, "'a','b',y\n'1',2,3\n"),
        "bom_blank_lines": c(H, "\xef\xbb\xbfa,y\n\n1,2\n\n\n3,4\n"),
        "nan_inf": c(H, "a,y\nnan,inf\n-inf,1\n"),
        "hex_exp": c(H, "a,y\n0x10,1e-45\n1e39,2\n"),
        "one_column_target": c(H, "y\n1\n2\n"),
        "header_only": c(H, "a,b,y\n"),
        "bad_ragged": c(H, "a,b,y\n1,2\n"),
        "bad_not_number": c(H, "a,y\nabc,1\n"),
        "bad_empty_field": c(H, "a,y\n,1\n"),
        "bad_unterminated": c(H, 'a,y\n"1,2\n'),
        "bad_after_quote": c(H, 'a,y\n"1"x,2\n'),
        "bad_empty": c(H, ""),
        "bad_no_rows_no_header": c(0, "\n\n"),
        "bad_target_name_missing": c(H | NAME, "a,b\n1,2\n"),
        "bad_target_name_no_header": c(NAME, "1,2\n"),
        "odd_delim_quote": c(H | (7 << 1), 'a"b"y\n1"2"3\n'),
        "nul_bytes": c(H, "a,y\n1\x00,2\n"),
        "long_field": c(H, "a,y\n" + "1" * 300 + ",2\n"),
        "cr_only": c(H, "a,y\r1,2\r3,4\r"),
    }
    for k, v in seeds.items():
        emit("csv", k, v)


# ------------------------------------------------------------------ .npy
NPY_FMT = {"f4": "f", "f8": "d", "i4": "i", "i8": "q", "u1": "B"}


def npy_header(descr, shape, fortran=False, version=1, raw_dict=None, pad=True):
    if raw_dict is None:
        shp = "(" + "".join("%d, " % s for s in shape).rstrip(" ") + ")" if len(shape) != 1 else "(%d,)" % shape[0]
        if len(shape) > 1:
            shp = "(" + ", ".join(str(s) for s in shape) + ")"
        raw_dict = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, "True" if fortran else "False", shp)
    pre = 10 if version == 1 else 12
    h = raw_dict
    if pad:
        h += " " * ((64 - (pre + len(h) + 1) % 64) % 64)
    h += "\n"
    h = h.encode("latin-1")
    out = b"\x93NUMPY" + bytes([version, 0])
    out += struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h))
    return out + h


def npy(descr, shape, values, **kw):
    order = descr[0]
    code = NPY_FMT[descr[1:]]
    e = ">" if order == ">" else "<"
    return npy_header(descr, shape, **kw) + b"".join(struct.pack(e + code, v) for v in values)


def npy_valid():
    return {
        "f4_2x3": npy("<f4", [2, 3], [0.0, 1.0, -2.5, 3e38, float("inf"), float("nan")]),
        "f8_4": npy("<f8", [4], [1e-300, -0.0, 2.0, 1e300]),
        "i4_2x2": npy("<i4", [2, 2], [-(2**31), -1, 0, 2**31 - 1]),
        "i8_3": npy("<i8", [3], [-(2**63), 0, 2**63 - 1]),
        "u1_5": npy("|u1", [5], [0, 1, 127, 128, 255]),
        "f4_big_endian": npy(">f4", [3], [1.0, -1.0, 0.5]),
        "i8_big_endian_2x2": npy(">i8", [2, 2], [1, -2, 3, -4]),
        "f8_fortran_2x3": npy("<f8", [2, 3], [1, 4, 2, 5, 3, 6], fortran=True),
        "i4_fortran_2x3x2": npy("<i4", [2, 3, 2], list(range(12)), fortran=True),
        "scalar": npy("<f4", [], [3.5]),
        "empty_0": npy("<f4", [0], []),
        "empty_3x0": npy("<i8", [3, 0], []),
        "v2": npy("<f4", [2], [1.0, 2.0], version=2),
        "v3": npy("<u1", [2], [7, 8], version=3),
    }


def npy_seeds():
    for k, v in npy_valid().items():
        emit("npy", k, v)
    hostile = {
        "huge_shape": npy_header("<f4", [2**40, 2**40]),
        "shape_overflow_size_t": npy_header("<f8", [], raw_dict="{'descr': '<f8', 'fortran_order': False, 'shape': (18446744073709551615, 2), }"),
        "shape_digits_overflow": npy_header("<f8", [], raw_dict="{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999,), }"),
        "shape_negative": npy_header("<f4", [], raw_dict="{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }"),
        "shape_65_dims": npy_header("<f4", [1] * 65),
        "shape_one_no_comma": npy_header("<f4", [], raw_dict="{'descr': '<f4', 'fortran_order': False, 'shape': (3), }") + b"\0" * 12,
        "header_len_huge_v2": b"\x93NUMPY\x02\x00" + struct.pack("<I", 0xFFFFFFFF) + b"{}",
        "header_len_past_end": b"\x93NUMPY\x01\x00" + struct.pack("<H", 0xFFFF) + b"{'descr'",
        "data_truncated": npy("<f8", [4], [1, 2, 3, 4])[:-5],
        "data_extra": npy("<f4", [1], [1.0]) + b"\0\0\0\0",
        "bad_magic": b"\x93NUMPZ\x01\x00" + npy("<f4", [1], [1.0])[8:],
        "bad_version_4": b"\x93NUMPY\x04\x00" + npy("<f4", [1], [1.0])[8:],
        "bad_version_1_1": b"\x93NUMPY\x01\x01" + npy("<f4", [1], [1.0])[8:],
        "object_dtype": npy_header("|O", [], raw_dict="{'descr': '|O', 'fortran_order': False, 'shape': (1,), }") + b"\0" * 8,
        "structured_dtype": npy_header("", [], raw_dict="{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }") + b"\0" * 4,
        "unknown_dtype_f2": npy_header("<f2", [1]) + b"\0\0",
        "ok_u1_big_endian_marker": npy_header(">u1", [1]) + b"\0",
        "unknown_key": npy_header("", [], raw_dict="{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}") + b"\0" * 4,
        "duplicate_key": npy_header("", [], raw_dict="{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}") + b"\0" * 4,
        "missing_shape": npy_header("", [], raw_dict="{'descr': '<f4', 'fortran_order': False}"),
        "fortran_not_bool": npy_header("", [], raw_dict="{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}") + b"\0" * 4,
        "nested_tuple": npy_header("", [], raw_dict="{'descr': '<f4', 'fortran_order': False, 'shape': ((1,),)}") + b"\0" * 4,
        "ok_python2_long": npy_header("", [], raw_dict="{'descr': '<f4', 'fortran_order': False, 'shape': (2L,)}") + b"\0" * 8,
        "text_after_dict": npy_header("", [], raw_dict="{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x") + b"\0" * 4,
        "unterminated_string": npy_header("", [], raw_dict="{'descr: '<f4'"),
        "short_9_bytes": b"\x93NUMPY\x01\x00\x00",
        "v2_short_11_bytes": b"\x93NUMPY\x02\x00\x00\x00\x00",
        "empty": b"",
    }
    for k, v in hostile.items():
        emit("npy", k if k.startswith("ok_") else "bad_" + k, v)


# ------------------------------------------------------------------ .npz (zip)
def zip_archive(members, compress=False, mutate=None):
    """members: list of (name, bytes). mutate(local_headers, central, eocd) may edit the records."""
    out = bytearray()
    central = []
    for name, data in members:
        nb = name.encode("utf-8", "surrogateescape")
        crc = zlib.crc32(data) & 0xFFFFFFFF
        if compress:
            co = zlib.compressobj(6, zlib.DEFLATED, -15)
            payload = co.compress(data) + co.flush()
            method = 8
        else:
            payload, method = data, 0
        off = len(out)
        local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(payload), len(data), len(nb), 0)
        out += local + nb + payload
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(payload),
                                   len(data), len(nb), 0, 0, 0, 0, 0, off) + nb)
    cd_off = len(out)
    cd = b"".join(central)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(cd), cd_off, 0)
    data = bytearray(out + cd + eocd)
    if mutate:
        mutate(data, cd_off)
    return bytes(data)


def overlapping_zip(inner):
    """Entry x.npy (stored) whose data is a complete local header + data of y.npy; the central
    directory lists both, so y lies inside x."""
    def local(nb, data):
        return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, zlib.crc32(data) & 0xFFFFFFFF,
                           len(data), len(data), len(nb), 0) + nb
    y = local(b"y.npy", inner) + inner
    x = local(b"x.npy", y) + y
    central = b""
    for nb, data, off in [(b"x.npy", y, 0), (b"y.npy", inner, 30 + 5)]:
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, zlib.crc32(data) & 0xFFFFFFFF,
                               len(data), len(data), len(nb), 0, 0, 0, 0, 0, off) + nb
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 2, 2, len(central), len(x), 0)
    return x + central + eocd


def npz_seeds():
    v = npy_valid()
    two = [("x.npy", v["f4_2x3"]), ("y.npy", v["i8_3"])]
    emit("npz", "stored_two", zip_archive(two))
    emit("npz", "deflate_two", zip_archive(two, compress=True))
    emit("npz", "deflate_fortran_big_endian", zip_archive([("f.npy", v["f8_fortran_2x3"]), ("b.npy", v["f4_big_endian"])], compress=True))
    emit("npz", "empty_archive", zip_archive([]))
    emit("npz", "scalar_and_empty", zip_archive([("s.npy", v["scalar"]), ("e.npy", v["empty_3x0"])]))

    def at(off, fmt, val):
        def m(d, cd_off):
            struct.pack_into(fmt, d, off if off >= 0 else len(d) + off, val)
        return m

    def cd_field(rel, fmt, val):
        def m(d, cd_off):
            struct.pack_into(fmt, d, cd_off + rel, val)
        return m

    one = [("x.npy", v["f4_2x3"])]
    hostile = {
        "crc_mismatch": zip_archive(one, mutate=lambda d, c: (struct.pack_into("<I", d, 14, 0), struct.pack_into("<I", d, c + 16, 0))),
        "crc_mismatch_deflate": zip_archive(one, compress=True, mutate=lambda d, c: (struct.pack_into("<I", d, 14, 7), struct.pack_into("<I", d, c + 16, 7))),
        "central_crc_only": zip_archive(one, mutate=cd_field(16, "<I", 0)),
        "local_crc_mismatch": zip_archive(one, mutate=at(14, "<I", 1)),
        "usize_huge_deflate": zip_archive(one, compress=True, mutate=lambda d, c: (struct.pack_into("<I", d, c + 24, 0xFFFFFFF0), struct.pack_into("<I", d, 22, 0xFFFFFFF0))),
        "zip64_marker_sizes": zip_archive(one, mutate=cd_field(20, "<I", 0xFFFFFFFF)),
        "zip64_entry_count": zip_archive(one, mutate=at(-12, "<H", 0xFFFF)),
        "cd_offset_past_end": zip_archive(one, mutate=at(-6, "<I", 0x7FFFFFFF)),
        "cd_size_huge": zip_archive(one, mutate=at(-10, "<I", 0x7FFFFFFF)),
        "entries_more_than_cd": zip_archive(one, mutate=lambda d, c: (struct.pack_into("<H", d, len(d) - 14, 9), struct.pack_into("<H", d, len(d) - 12, 9))),
        "local_offset_past": zip_archive(one, mutate=cd_field(42, "<I", 0x00FFFFFF)),
        "method_bzip2": zip_archive(one, mutate=lambda d, c: (struct.pack_into("<H", d, 8, 12), struct.pack_into("<H", d, c + 10, 12))),
        "encrypted": zip_archive(one, mutate=lambda d, c: (struct.pack_into("<H", d, 6, 1), struct.pack_into("<H", d, c + 8, 1))),
        "not_npy_name": zip_archive([("x.txt", b"hello")]),
        "name_only_ext": zip_archive([(".npy", v["u1_5"])]),
        "duplicate_names": zip_archive([("x.npy", v["u1_5"]), ("x.npy", v["u1_5"])]),
        "bad_npy_inside": zip_archive([("x.npy", npy_header("<f4", [2**40, 2**40]))]),
        "truncated": zip_archive(two)[:-30],
        "eocd_only_bad_sig": b"PK\x05\x07" + b"\0" * 18,
        "short": b"PK\x03\x04",
        "comment_mismatch": zip_archive(one, mutate=at(-2, "<H", 5)),
        "deflate_corrupt": zip_archive(one, compress=True, mutate=lambda d, c: d.__setitem__(35, d[35] ^ 0xFF)),
        "multi_disk": zip_archive(one, mutate=at(-18, "<H", 1)),
        "empty": b"",
    }
    # a zip bomb: 1 MiB of zeros in a valid .npy (u1, 1 MiB) deflated to about 1 KB
    big = npy_header("|u1", [1 << 20]) + b"\0" * (1 << 20)
    emit("npz", "bomb_1mib_valid", zip_archive([("z.npy", big)], compress=True))
    # the second central record points at the first local header: its name does not match
    def repoint(d, c):
        struct.pack_into("<I", d, c + 46 + 5 + 42, 0)
    hostile["repointed_local"] = zip_archive([("x.npy", v["u1_5"]), ("y.npy", v["u1_5"])], mutate=repoint)
    hostile["overlapping"] = overlapping_zip(v["u1_5"])
    for k, val in hostile.items():
        emit("npz", "bad_" + k, val)


# ------------------------------------------------------------------ safetensors
ST_FMT = {"F32": "f", "F64": "d", "I32": "i", "I64": "q", "U8": "B"}


def st(tensors, metadata=None, header_override=None, data_extra=b"", length_override=None):
    """tensors: list of (name, dtype, shape, values)."""
    hdr = {}
    if metadata is not None:
        hdr["__metadata__"] = metadata
    data = b""
    for name, dt, shape, values in tensors:
        blob = b"".join(struct.pack("<" + ST_FMT[dt], x) for x in values)
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    text = header_override if header_override is not None else json.dumps(hdr, separators=(",", ":"))
    text = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    text += b" " * ((8 - len(text) % 8) % 8)
    n = len(text) if length_override is None else length_override
    return struct.pack("<Q", n) + text + data + data_extra


def st_seeds():
    valid = {
        "model": st([("a", "F32", [2, 3], [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]), ("b", "I64", [4], [1, 2, 3, 4]),
                     ("c", "F64", [2, 2], [1.0, 2.0, 3.0, 4.0])], metadata={"format": "pt"}),
        "all_dtypes": st([("f", "F32", [1], [1.0]), ("d", "F64", [1], [2.0]), ("i", "I32", [2], [-1, 1]),
                          ("l", "I64", [1], [-(2**63)]), ("u", "U8", [3], [0, 128, 255])]),
        "resize_a": st([("a", "F32", [1, 4], [1, 2, 3, 4])]),
        "scalar_and_empty": st([("s", "F32", [], [7.0]), ("e", "F32", [0, 5], []), ("e2", "U8", [0], [])]),
        "empty_object": st([]),
        "metadata_only": st([], metadata={"k": "v", "unicode": "\u00e9\u4e2d"}),
        "unicode_name": st([("\u00e9t\u00e9", "U8", [1], [1])]),
    }
    for k, val in valid.items():
        emit("safetensors", k, val)
    big = 2**64 - 1
    H = lambda obj: json.dumps(obj, separators=(",", ":"))
    hostile = {
        "header_len_huge": st([], length_override=2**63),
        "header_len_u64max": st([], length_override=big),
        "header_len_past_end": st([], length_override=4096),
        "header_len_1": st([], length_override=1),
        "short_7_bytes": b"\x02\0\0\0\0\0\0",
        "shape_overflow": st([], header_override=H({"a": {"dtype": "F64", "shape": [2**32, 2**32, 2**32], "data_offsets": [0, 0]}})),
        "shape_u64max": st([], header_override=H({"a": {"dtype": "U8", "shape": [big], "data_offsets": [0, big]}})),
        "shape_negative": st([], header_override=H({"a": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 0]}})),
        "shape_float": st([], header_override=H({"a": {"dtype": "U8", "shape": [1.5], "data_offsets": [0, 1]}}), data_extra=b"\0"),
        "shape_too_big_number": st([], header_override='{"a":{"dtype":"U8","shape":[99999999999999999999999],"data_offsets":[0,1]}}', data_extra=b"\0"),
        "offsets_overflow": st([], header_override=H({"a": {"dtype": "U8", "shape": [2], "data_offsets": [big, 1]}})),
        "offsets_end_before_begin": st([], header_override=H({"a": {"dtype": "U8", "shape": [0], "data_offsets": [5, 4]}})),
        "offsets_wrong_span": st([], header_override=H({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}), data_extra=b"\0" * 4),
        "offsets_past_data": st([], header_override=H({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})),
        "gap": st([], header_override=H({"a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}), data_extra=b"\0\0"),
        "overlap": st([], header_override=H({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                                             "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}), data_extra=b"\0" * 3),
        "trailing_bytes": st([("a", "U8", [1], [1])], data_extra=b"\0\0"),
        "truncated_data": st([("a", "F64", [4], [1, 2, 3, 4])])[:-9],
        "dtype_bf16": st([], header_override=H({"a": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}}), data_extra=b"\0\0"),
        "dtype_number": st([], header_override=H({"a": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}}), data_extra=b"\0" * 4),
        "missing_key": st([], header_override=H({"a": {"dtype": "U8", "shape": [1]}}), data_extra=b"\0"),
        "extra_key": st([], header_override=H({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "x": 1}}), data_extra=b"\0"),
        "duplicate_key": st([], header_override='{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', data_extra=b"\0"),
        "deep_nesting": st([], header_override="{\"a\":" + "[" * 5000 + "]" * 5000 + "}"),
        "not_object": st([], header_override="[1,2,3]"),
        "not_json": st([], header_override="{not json"),
        "invalid_utf8_name": st([], header_override=b'{"\xff\xfe":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', data_extra=b"\0"),
        "metadata_not_string": st([], header_override='{"__metadata__":{"k":1}}'),
        "metadata_not_object": st([], header_override='{"__metadata__":[]}'),
        "entry_not_object": st([], header_override='{"a":5}'),
        "offsets_three": st([], header_override=H({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 2]}}), data_extra=b"\0"),
        "nul_in_header": st([], header_override=b'{"a\x00b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', data_extra=b"\0"),
        "empty": b"",
    }
    for k, val in hostile.items():
        emit("safetensors", "bad_" + k, val)


# ------------------------------------------------------------------ CIFAR-10 binary
def cifar_seeds():
    # byte 0: bit 0 normalize, bits 1-3 max_samples, bit 4 align to records, bit 5 two files
    def rec(label, seed):
        return bytes([label]) + bytes((seed * 31 + i * 7) % 256 for i in range(3072))
    one, two = rec(3, 1), rec(9, 2)
    emit("cifar10", "one_record", bytes([0]) + one)
    emit("cifar10", "two_records_normalize", bytes([1]) + one + two)
    emit("cifar10", "two_files", bytes([32 | 16]) + one + two)
    emit("cifar10", "max_samples_1", bytes([1 << 1]) + one + two)
    emit("cifar10", "bad_label_10", bytes([0]) + rec(10, 3))
    emit("cifar10", "bad_label_255_second", bytes([0]) + one + rec(255, 4))
    emit("cifar10", "bad_3072_bytes", bytes([0]) + one[:-1])
    emit("cifar10", "bad_3074_bytes", bytes([0]) + one + b"\0")
    emit("cifar10", "bad_empty", bytes([0]))
    emit("cifar10", "bad_second_file_empty", bytes([32 | 16]) + one)


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    idx_seeds()
    csv_seeds()
    npy_seeds()
    npz_seeds()
    st_seeds()
    cifar_seeds()
    total = 0
    for d, _, files in os.walk(ROOT):
        total += sum(os.path.getsize(os.path.join(d, f)) for f in files)
    counts = {t: len(os.listdir(os.path.join(ROOT, t))) for t in sorted(os.listdir(ROOT))}
    print("seed corpora in %s: %s, %d bytes" % (ROOT, counts, total))


if __name__ == "__main__":
    sys.exit(main())
