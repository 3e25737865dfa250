"""``python -m lrsmc.convert INPUT OUTPUT.npz``: converts an NWB, EDF/BDF or HDF5 recording into
the .npz that the command line reads (``lrsmc fit --data OUTPUT.npz --layout ...``).

The archive holds ``observations`` (the data: float64 values, or int32 spike counts), ``layout``
(the ``--layout`` to give), ``channels`` (names), ``sampling_rate`` (Hz; NaN when unknown) and,
when present, ``start_time``, ``trial_starts`` and ``timestamps``. The command line picks
``observations`` without ``--field``. The input is never written; an existing output is kept
unless ``--force`` is given; the archive is written to a temporary file next to it and renamed.
Exit status: 0 on success, 2 for bad input or usage, 1 for anything else.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from typing import List, Optional, Sequence

import numpy as np

from . import _core, _formats

#: The options each reader takes, by extension group, as the command line spells them.
_READER_OPTIONS = {
    "nwb": {
        "bin_size",
        "units",
        "series",
        "channels",
        "start",
        "stop",
        "trials",
        "trial_length",
        "trial_align",
    },
    "edf": {"channels"},
    "hdf5": {"dataset", "layout", "sampling_rate"},
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lrsmc.convert",
        description=(
            "Convert an NWB, EDF/BDF or HDF5 recording into an .npz for `lrsmc fit --data` "
            "(entry 'observations'; the layout to give is stored as 'layout' and printed)."
        ),
        epilog=f"Supported formats: {_formats.supported_formats()}.",
    )
    parser.add_argument("input", help="the recording (.nwb, .edf, .bdf, .h5, .hdf5, .hdf)")
    parser.add_argument("output", help="the .npz to write")
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    nwb = parser.add_argument_group("NWB")
    nwb.add_argument(
        "--bin-size",
        type=float,
        metavar="SECONDS",
        help="bin the Units table's spike times into counts",
    )
    nwb.add_argument(
        "--units", type=int, nargs="+", metavar="ID", help="unit ids to bin (default: all)"
    )
    nwb.add_argument(
        "--series", metavar="NAME", help="read this TimeSeries/ElectricalSeries as time × channels"
    )
    nwb.add_argument(
        "--start", type=float, metavar="SECONDS", help="first bin edge or first sample time"
    )
    nwb.add_argument("--stop", type=float, metavar="SECONDS", help="end of the range (exclusive)")
    nwb.add_argument("--trials", action="store_true", help="cut into trials from the trials table")
    nwb.add_argument(
        "--trial-length", type=float, metavar="SECONDS", help="default: the shortest trial"
    )
    nwb.add_argument(
        "--trial-align",
        metavar="COLUMN",
        help="trials-table column of trial starts (default start_time)",
    )
    both = parser.add_argument_group("NWB series and EDF/BDF")
    both.add_argument(
        "--channels",
        nargs="+",
        metavar="CHANNEL",
        help="channels to keep: indices (digits) or names (EDF labels match without case or trailing dots)",
    )
    hdf5 = parser.add_argument_group("HDF5")
    hdf5.add_argument(
        "--dataset", metavar="PATH", help="the dataset inside the file, e.g. /recordings/lfp"
    )
    hdf5.add_argument(
        "--layout",
        choices=_formats.LAYOUTS,
        metavar="LAYOUT",
        help="how the dataset is laid out: "
        + " | ".join(_formats.LAYOUTS)
        + " (default by its rank)",
    )
    hdf5.add_argument(
        "--sampling-rate",
        type=float,
        metavar="HZ",
        help="default: the dataset's 'sampling_rate' or 'rate' attribute",
    )
    return parser


def _reader_options(arguments: argparse.Namespace, group: str) -> dict:
    given = {
        name: value
        for name, value in vars(arguments).items()
        if name not in ("input", "output", "force") and value is not None and value is not False
    }
    unused = sorted(set(given) - _READER_OPTIONS[group])
    if unused:
        spelled = ", ".join("--" + name.replace("_", "-") for name in unused)
        verb = "does" if len(unused) == 1 else "do"
        kind = {"nwb": "NWB", "edf": "EDF/BDF", "hdf5": "HDF5"}[group]
        raise _core.InvalidInputError(
            f"{arguments.input}: {spelled} {verb} not apply to {kind} files; it takes "
            + ", ".join("--" + name.replace("_", "-") for name in sorted(_READER_OPTIONS[group]))
        )
    if "channels" in given:
        given["channels"] = [int(c) if c.isdigit() else c for c in given["channels"]]
    return given


def convert(
    input_path: str, output_path: str, force: bool = False, **options
) -> _formats.Recording:
    """Reads ``input_path`` with :func:`lrsmc.load_recording` (``options`` go to the reader)
    and writes the command line's .npz to ``output_path``. Returns the recording."""
    if not output_path.lower().endswith(".npz"):
        raise _core.InvalidInputError(f"{output_path}: the output must be an .npz file")
    if os.path.exists(output_path):
        if os.path.exists(input_path) and os.path.samefile(input_path, output_path):
            raise _core.InvalidInputError(
                f"{output_path}: the output is the input file; name another"
            )
        if not force:
            raise _core.IoError(f"{output_path}: exists; not replaced (give --force to replace it)")
    recording = _formats.load_recording(input_path, **options)
    entries = {
        "observations": recording.data,
        "layout": np.array(recording.layout),
        "channels": np.array(recording.channels, dtype=str),
        "sampling_rate": np.array(
            np.nan if recording.sampling_rate is None else recording.sampling_rate
        ),
    }
    for name in ("start_time", "trial_starts", "timestamps"):
        value = getattr(recording, name)
        if value is not None:
            entries[name] = np.asarray(value, dtype=np.float64)
    _write_npz(output_path, entries, force)
    return recording


def _write_npz(path: str, entries: dict, force: bool) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(
        prefix=".lrsmc-convert-", suffix=".npz.tmp", dir=folder
    )
    try:
        with os.fdopen(descriptor, "wb") as stream:
            np.savez(stream, **entries)
            stream.flush()
            os.fsync(stream.fileno())
        if force:
            os.replace(temporary, path)
            return
        # A hard link fails when the output has appeared meanwhile, so it is never replaced.
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise _core.IoError(
                f"{path}: exists; not replaced (give --force to replace it)"
            ) from None
        except OSError:  # no hard links on this file system
            if os.path.exists(path):
                raise _core.IoError(
                    f"{path}: exists; not replaced (give --force to replace it)"
                ) from None
            os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _describe(recording: _formats.Recording) -> str:
    shape = recording.data.shape
    axes = recording.layout.split(",")
    words = {"trials": "trials", "time": "steps", "channels": "channels"}
    size = " × ".join(f"{n} {words[a]}" for n, a in zip(shape, axes))
    rate = "" if recording.sampling_rate is None else f", {recording.sampling_rate:g} Hz"
    return f"{size} (layout {recording.layout}), {recording.data.dtype}{rate}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        extension = os.path.splitext(arguments.input)[1].lower()
        group = {".nwb": "nwb", ".edf": "edf", ".bdf": "edf"}.get(
            extension, "hdf5" if extension in _formats.SUPPORTED_FORMATS else None
        )
        options = _reader_options(arguments, group) if group else {}
        recording = convert(arguments.input, arguments.output, arguments.force, **options)
    except (_core.InvalidInputError, _core.IoError) as error:
        print(f"lrsmc convert: error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:
        print(f"lrsmc convert: error: {error}", file=sys.stderr)
        return 1
    print(f"lrsmc convert: wrote {arguments.output}: {_describe(recording)}")
    print(f"  read it with: lrsmc fit --data {arguments.output} --layout {recording.layout} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
