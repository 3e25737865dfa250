#!/usr/bin/env python3
"""Writes the fuzz target's seed corpus into corpus/ (Python standard library only; no numpy).

Each file is one fuzz input: a mode byte (tests/robustness/fuzz/fuzz_parsers.cpp: mode % 4 picks
read_npy, read_npz, load_model or load_dataset; for load_dataset, (mode / 4) % 4 the layout and
(mode / 16) % 2 an .npz rather than an .npy) followed by a small valid file.
"""
import json
import pathlib
import struct
import zipfile


def npy(descr, shape, payload, fortran=False, version=1):
    dictionary = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (
        descr, "True" if fortran else "False",
        "(%s)" % (", ".join(map(str, shape)) + ("," if len(shape) == 1 else "")))
    width = 2 if version == 1 else 4
    header = dictionary + " " * ((64 - (10 + width - 2 + len(dictionary) + 1) % 64) % 64) + "\n"
    length = struct.pack("<H" if version == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header.encode("latin-1") + payload


def float64(values):
    return struct.pack("<%dd" % len(values), *values)


def text(value):
    return npy("<U%d" % len(value), (), value.encode("utf-32-le"))


def npz(entries):
    path = pathlib.Path("/tmp/lrsmc-corpus.zip")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries.items():
            # A fixed date: the same bytes on every run.
            archive.writestr(zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0)), data)
    data = path.read_bytes()
    path.unlink()
    return data


# The smallest model: rank 1, two units, one channel, diagonal noise, no inputs.
config = {"format": "lrsmc-model", "version": 1, "rank": 1, "hidden": 2, "channels": 1,
          "inputs": 0, "nonlinearity": "relu", "transition_noise": "diag",
          "initial_noise": "diag", "observation": "gaussian", "link": "identity",
          "initial_state": "zero"}
model = npz({
    "m": npy("<f8", (2, 1), float64([1.0, -1.0])),
    "n": npy("<f8", (1, 2), float64([0.5, 0.25])),
    "h": npy("<f8", (2,), float64([0.0, 0.1])),
    "decay_logit": npy("<f8", (1,), float64([-1.0])),
    "transition_noise": npy("<f8", (1,), float64([-2.0])),
    "initial_noise": npy("<f8", (1,), float64([0.0])),
    "readout_weight": npy("<f8", (1, 1), float64([1.0])),
    "readout_bias": npy("<f8", (1,), float64([0.0])),
    "observation_noise": npy("<f8", (1,), float64([-1.0])),
    "config": text(json.dumps(config)),
})
data = npy("<f8", (2, 3, 1), float64([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))
seeds = {
    "npy_float64": (0, npy("<f8", (2, 3), float64([1, 2, 3, 4, 5, 6]))),
    "npy_float32_fortran": (0, npy("<f4", (3, 2), struct.pack("<6f", 1, 2, 3, 4, 5, 6), True)),
    "npy_int16_version2": (0, npy("<i2", (4,), struct.pack("<4h", -1, 0, 1, 300), version=2)),
    "npz_arrays_and_text": (1, npz({"observations": data, "note": text("hi")})),
    "model": (2, model),
    "dataset_npy": (3, data),
    "dataset_npz": (3 + 16, npz({"observations": data})),
}
here = pathlib.Path(__file__).resolve().parent / "corpus"
for name, (mode, contents) in seeds.items():
    (here / name).write_bytes(bytes([mode]) + contents)
