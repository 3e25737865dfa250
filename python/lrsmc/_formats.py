"""Readers for the formats neuroscientists store recordings in — NWB, EDF/BDF and HDF5 — and
the binning of spike times into counts. Each reader returns a :class:`Recording` whose ``data``
is laid out as the engine reads it (``time,channels`` or ``trials,time,channels``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from . import _core
from ._api import LAYOUTS

PathLike = Union[str, "os.PathLike[str]"]

#: File extensions and the reader for each, as the error for an unsupported file lists them.
SUPPORTED_FORMATS: Dict[str, str] = {
    ".nwb": "NWB (load_nwb)",
    ".edf": "EDF/EDF+ (load_edf)",
    ".bdf": "BDF/BDF+ (load_edf)",
    ".h5": "HDF5 (load_hdf5)",
    ".hdf5": "HDF5 (load_hdf5)",
    ".hdf": "HDF5 (load_hdf5)",
}

# A time within this many bins (or samples) of a bin edge counts as on the edge: 0.3 s / 0.1 s
# is 2.9999999999999996 in floating point, and a spike at 0.3 s belongs to the bin [0.3, 0.4).
_EDGE_TOLERANCE = 1e-9

_INSTALL_HINT = "install the readers with: pip install 'lrsmc[formats]'"


def supported_formats() -> str:
    """The supported formats as one line, for error messages and ``--help``."""
    readers: Dict[str, List[str]] = {}
    for extension, reader in SUPPORTED_FORMATS.items():
        readers.setdefault(reader, []).append(extension)
    listed = "; ".join(f"{reader}: {', '.join(exts)}" for reader, exts in readers.items())
    return f"{listed}; numpy .npy/.npz are read by lrsmc.load_data and the command line"


@dataclass
class Recording:
    """A recording read by :func:`load_nwb`, :func:`load_edf`, :func:`load_hdf5` or
    :func:`load_recording`. It converts to its ``data`` array (``np.asarray(recording)``), so it
    is accepted wherever lrsmc takes an array; ``layout`` is the matching ``--layout``."""

    data: np.ndarray  #: (time, channels), or (trials, time, channels) when cut into trials
    layout: str  #: "time,channels" or "trials,time,channels"
    sampling_rate: Optional[float]  #: samples (or bins) per second; None when irregular/unknown
    channels: List[str]  #: one name per channel: labels, electrode ids, or unit ids for counts
    source: str  #: the file, and the series or dataset read from it
    start_time: Optional[float] = None  #: seconds at the first sample or bin edge, when known
    trial_starts: Optional[np.ndarray] = None  #: (trials,) seconds at each trial's first sample
    timestamps: Optional[np.ndarray] = None  #: (time,) seconds of irregular samples, else None

    def __repr__(self) -> str:
        shape = " × ".join(str(n) for n in self.data.shape)
        rate = "" if self.sampling_rate is None else f", {self.sampling_rate:g} Hz"
        return f"lrsmc.Recording({self.source}: {shape} (layout {self.layout}), {self.data.dtype}{rate})"

    def __array__(self, dtype=None, copy=None):
        if copy:
            return np.array(self.data, dtype=dtype, copy=True)
        return np.asarray(self.data, dtype=dtype)


# --- helpers ------------------------------------------------------------------------------------


def _invalid(message: str) -> _core.InvalidInputError:
    return _core.InvalidInputError(message)


def _existing_file(path: PathLike) -> str:
    name = os.fspath(path)
    if not os.path.exists(name):
        raise _core.IoError(f"{name}: cannot open: no such file")
    if os.path.isdir(name):
        raise _core.IoError(f"{name}: cannot open: is a directory, expected a file")
    return name


def _import(module: str, source: str):
    """Imports an optional reader, or says which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{source}: reading it needs the package '{module}'; {_INSTALL_HINT}"
        ) from error


def _positive_finite(value, name: str, source: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _invalid(f"{source}: {name} must be a number; got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise _invalid(
            f"{source}: {name} must be a positive finite number of seconds; got {value!r}"
        )
    return number


def _finite_or_none(value, name: str, source: str) -> Optional[float]:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _invalid(f"{source}: {name} must be a number of seconds; got {value!r}") from None
    if not np.isfinite(number):
        raise _invalid(f"{source}: {name} must be finite; got {value!r}")
    return number


def _whole_bins(duration: float, bin_size: float) -> int:
    """How many whole bins of `bin_size` fit in `duration` (a bin short by rounding still fits)."""
    ratio = duration / bin_size
    return int(np.floor(ratio + max(_EDGE_TOLERANCE, 1e-12 * abs(ratio))))


def _bin_index(times: np.ndarray, origins, bin_size: float) -> np.ndarray:
    """floor((times − origins) / bin_size), with a time within _EDGE_TOLERANCE bins of an edge
    on the edge. The tolerance grows with the magnitude of the times (about 450 units in the
    last place), since (t − origin) / bin_size rounds more coarsely far from zero."""
    position = (times - origins) / bin_size
    nearest = np.round(position)
    tolerance = np.maximum(_EDGE_TOLERANCE, 1e-13 * (np.abs(times) + np.abs(origins)) / bin_size)
    on_edge = np.abs(position - nearest) <= tolerance
    return np.floor(np.where(on_edge, nearest, position)).astype(np.int64)


def _listing(names: Sequence[str], limit: int = 20) -> str:
    names = list(names)
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


# --- spike times --------------------------------------------------------------------------------


def spike_times_to_counts(
    spike_times,
    bin_size: float,
    start: Optional[float] = None,
    stop: Optional[float] = None,
    trial_starts=None,
    trial_length: Optional[float] = None,
) -> np.ndarray:
    """Counts spikes in bins: ``spike_times`` is a sequence of per-unit arrays of spike times
    (seconds, any order); the result is an int32 array of counts, (time bins, units), or
    (trials, time bins, units) when ``trial_starts`` is given.

    Bins are half-open, ``[edge, edge + bin_size)``: a spike exactly on an edge counts in the
    bin that starts there (a time within 1e-9 bins of an edge counts as on it, so that 0.3 s
    starts the fourth 0.1 s bin despite rounding; the margin grows to about 450 units in the
    last place for times far from zero). Without trials, the edges are
    ``start + k·bin_size`` for the whole bins that fit in ``[start, stop)``; ``start`` defaults
    to 0 and ``stop`` to just after the last spike (its bin is the last). With
    ``trial_starts`` (seconds, one per trial), trial ``i`` has the whole bins of
    ``[trial_starts[i], trial_starts[i] + trial_length)``, and ``start``/``stop`` must be None.
    Spikes outside every bin are dropped; a unit without spikes gives a column of zeros.

    Raises :class:`InvalidInputError` (a ValueError) naming the unit and value for a spike
    time that is not finite, or for a bin size, range or trial length that is not usable.
    """
    return _spike_counts(
        spike_times, bin_size, start, stop, trial_starts, trial_length, "spike_times_to_counts"
    )


def _spike_counts(
    spike_times, bin_size, start, stop, trial_starts, trial_length, source, unit_names=None
):
    """spike_times_to_counts, with errors that name `source` and each unit by `unit_names`."""
    bin_size = _positive_finite(bin_size, "bin_size", source)
    if isinstance(spike_times, np.ndarray) and spike_times.dtype != object and spike_times.ndim < 2:
        raise _invalid(
            f"{source}: spike_times must be a sequence of per-unit arrays; got one array of shape "
            f"{spike_times.shape} (wrap a single unit's times in a list)"
        )
    units = []
    for unit, times in enumerate(spike_times):
        label = f"unit {unit if unit_names is None else unit_names[unit]}"
        try:
            array = np.asarray(times, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as error:
            raise _invalid(f"{source}: {label}: spike times are not numbers ({error})") from None
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            raise _invalid(
                f"{source}: {label}: spike time {bad[0]} is {array[bad[0]]}; expected finite seconds"
            )
        units.append(np.sort(array))

    if trial_starts is not None:
        if start is not None or stop is not None:
            raise _invalid(f"{source}: start/stop given with trial_starts; give one or the other")
        if trial_length is None:
            raise _invalid(f"{source}: trial_starts given without trial_length")
        trial_length = _positive_finite(trial_length, "trial_length", source)
        starts = np.asarray(trial_starts, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(starts)):
            bad = int(np.flatnonzero(~np.isfinite(starts))[0])
            raise _invalid(f"{source}: trial start {bad} is {starts[bad]}; expected finite seconds")
        num_bins = _whole_bins(trial_length, bin_size)
        if num_bins < 1:
            raise _invalid(
                f"{source}: trial_length {trial_length} s is shorter than one bin of {bin_size} s"
            )
        return _count(units, starts, num_bins, bin_size)

    if trial_length is not None:
        raise _invalid(f"{source}: trial_length given without trial_starts")
    start = _finite_or_none(start, "start", source)
    stop = _finite_or_none(stop, "stop", source)
    start = 0.0 if start is None else start
    if stop is None:
        last = max((times[-1] for times in units if times.size), default=None)
        if last is None or last < start:
            raise _invalid(
                f"{source}: no spike at or after start {start} s to end the range; give stop"
            )
        num_bins = int(_bin_index(np.array([last]), start, bin_size)[0]) + 1
    else:
        if stop <= start:
            raise _invalid(f"{source}: stop must be after start; got start {start}, stop {stop}")
        num_bins = _whole_bins(stop - start, bin_size)
        if num_bins < 1:
            raise _invalid(
                f"{source}: the range [{start}, {stop}) s is shorter than one bin of {bin_size} s"
            )
    return _count(units, np.array([start]), num_bins, bin_size)[0]


def _count(
    units: List[np.ndarray], starts: np.ndarray, num_bins: int, bin_size: float
) -> np.ndarray:
    """Counts of sorted per-unit `units` in `num_bins` bins after each of `starts`:
    (len(starts), num_bins, len(units)) int32."""
    num_trials, num_units = starts.size, len(units)
    size = num_trials * num_bins * num_units
    span = num_bins * bin_size
    # Each trial's spikes are found by bisection in the sorted times, so the work grows with
    # the spikes inside trials, not trials × spikes; a bin of slack on each side keeps spikes
    # on the edges, and _bin_index decides.
    slack = bin_size
    flat_indices = []
    for unit, times in enumerate(units):
        if not times.size:
            continue
        low = np.searchsorted(times, starts - slack, side="left")
        high = np.searchsorted(times, starts + span + slack, side="right")
        lengths = high - low
        total = int(lengths.sum())
        if not total:
            continue
        trial = np.repeat(np.arange(num_trials), lengths)
        first = np.repeat(np.cumsum(lengths) - lengths, lengths)
        spike = np.arange(total) - first + np.repeat(low, lengths)
        index = _bin_index(times[spike], starts[trial], bin_size)
        inside = (index >= 0) & (index < num_bins)
        flat_indices.append((trial[inside] * num_bins + index[inside]) * num_units + unit)
    flat = np.concatenate(flat_indices) if flat_indices else np.zeros(0, dtype=np.int64)
    counts = np.bincount(flat, minlength=size).astype(np.int32)
    return counts.reshape(num_trials, num_bins, num_units)


# --- NWB ----------------------------------------------------------------------------------------


def _nwb_series(nwbfile, name: str, source: str):
    pynwb = _import("pynwb", source)
    found = [
        obj
        for obj in nwbfile.objects.values()
        if isinstance(obj, pynwb.TimeSeries) and obj.name == name
    ]
    if len(found) == 1:
        return found[0]
    names = sorted(
        {obj.name for obj in nwbfile.objects.values() if isinstance(obj, pynwb.TimeSeries)}
    )
    if not found:
        raise _invalid(f"{source}: series '{name}' is missing; the file holds {_listing(names)}")
    raise _invalid(f"{source}: {len(found)} series are named '{name}'; the names must be unique")


def _nwb_trials(nwbfile, source: str, align: str, trial_length: Optional[float]):
    """Trial starts (the `align` column of the trials table) and the trial length (by default
    the shortest trial, so that every trial fills the same number of bins)."""
    if nwbfile.trials is None or len(nwbfile.trials) == 0:
        raise _invalid(f"{source}: trials=True given but the file has no trials table")
    columns = list(nwbfile.trials.colnames)
    if align not in columns:
        raise _invalid(
            f"{source}: trials table has no column '{align}'; it holds {_listing(columns)}"
        )
    starts = np.asarray(nwbfile.trials[align][:], dtype=np.float64)
    if trial_length is None:
        ends = np.asarray(nwbfile.trials["stop_time"][:], dtype=np.float64)
        durations = ends - starts
        trial_length = float(durations.min())
        if not trial_length > 0:
            raise _invalid(
                f"{source}: trial {int(durations.argmin())} ends at or before its '{align}' "
                f"({ends[durations.argmin()]} s); give trial_length"
            )
    return starts, trial_length


def _select_units(ids: np.ndarray, units, source: str) -> np.ndarray:
    """Row indices of the Units table for the unit ids `units` (all rows for None)."""
    if units is None:
        return np.arange(ids.size)
    wanted = np.atleast_1d(np.asarray(units))
    if wanted.dtype.kind not in "iu":
        raise _invalid(f"{source}: units must be unit ids (integers); got {units!r}")
    position = {int(unit_id): row for row, unit_id in enumerate(ids)}
    missing = [int(unit) for unit in wanted if int(unit) not in position]
    if missing:
        raise _invalid(
            f"{source}: unit id(s) {missing} are not in the Units table; its ids are "
            f"{_listing([str(int(i)) for i in ids])}"
        )
    return np.array([position[int(unit)] for unit in wanted], dtype=np.int64)


def load_nwb(
    path: PathLike,
    units=None,
    bin_size: Optional[float] = None,
    series: Optional[str] = None,
    channels=None,
    start: Optional[float] = None,
    stop: Optional[float] = None,
    trials: bool = False,
    trial_length: Optional[float] = None,
    trial_align: str = "start_time",
) -> Recording:
    """Reads a Neurodata Without Borders file (with pynwb).

    Spike counts: with ``bin_size`` (seconds), the Units table's spike times are binned as
    :func:`spike_times_to_counts` does into int32 counts, (bins, units); ``units`` selects
    units by their ids (the table's ``id`` column, in the order given; default all), and the
    channel names are those ids. ``start``/``stop`` bound the binned range (default: 0 to the
    last spike).

    A series: ``series`` names a TimeSeries or ElectricalSeries anywhere in the file
    (acquisition, processing modules); its data, scaled to its unit (``data · conversion +
    offset``, and ElectricalSeries' ``channel_conversion``), is read as float64 (time,
    channels); ``channels`` picks columns by index or by name (the electrodes' ``label``, else
    their ids), ``start``/``stop`` (seconds) the samples in ``[start, stop)``. A series with timestamps instead of a rate has ``sampling_rate`` None
    and its ``timestamps`` in the result.

    ``trials=True`` cuts either into (trials, time, channels) windows that start at the
    trials table's ``trial_align`` column and last ``trial_length`` seconds (default: the
    shortest trial).

    Raises :class:`IoError` for a missing or unreadable file, and :class:`InvalidInputError`
    (a ValueError) naming the file and the missing series, unit ids or column.
    """
    name = _existing_file(path)
    pynwb = _import("pynwb", name)
    if (bin_size is None) == (series is None):
        detail = "both given" if series is not None else "neither given"
        with _open_nwb(pynwb, name) as io:
            nwbfile = _read_nwb(io, name)
            num_units = 0 if nwbfile.units is None else len(nwbfile.units)
            names = sorted(
                {o.name for o in nwbfile.objects.values() if isinstance(o, pynwb.TimeSeries)}
            )
        raise _invalid(
            f"{name}: give bin_size= to bin the spike times of the {num_units} units, or series= "
            f"one of {_listing(names)} ({detail})"
        )
    with _open_nwb(pynwb, name) as io:
        nwbfile = _read_nwb(io, name)
        trial_starts = None
        if trials:
            if start is not None or stop is not None:
                raise _invalid(f"{name}: start/stop given with trials=True; give one or the other")
            trial_starts, trial_length = _nwb_trials(nwbfile, name, trial_align, trial_length)
        elif trial_length is not None:
            raise _invalid(f"{name}: trial_length given without trials=True")
        if bin_size is not None:
            if channels is not None:
                raise _invalid(f"{name}: channels= selects series columns; use units= for units")
            return _nwb_counts(
                nwbfile, name, units, bin_size, start, stop, trial_starts, trial_length
            )
        if units is not None:
            raise _invalid(f"{name}: units= selects units to bin; it needs bin_size=, not series=")
        return _nwb_series_data(
            nwbfile, name, series, channels, start, stop, trial_starts, trial_length
        )


def _open_nwb(pynwb, name: str):
    h5py = _import("h5py", name)
    if not h5py.is_hdf5(name):
        raise _core.IoError(f"{name}: not a readable NWB file (no HDF5 signature)")
    try:
        return pynwb.NWBHDF5IO(name, "r")
    except Exception as error:  # pynwb raises many types for files it cannot parse
        raise _core.IoError(
            f"{name}: not a readable NWB file ({type(error).__name__}: {error})"
        ) from error


def _read_nwb(io, name: str):
    try:
        return io.read()
    except Exception as error:  # pynwb raises many types for files it cannot parse
        raise _core.IoError(
            f"{name}: not a readable NWB file ({type(error).__name__}: {error})"
        ) from error


def _nwb_counts(
    nwbfile, name, units, bin_size, start, stop, trial_starts, trial_length
) -> Recording:
    table = nwbfile.units
    if table is None or len(table) == 0:
        raise _invalid(f"{name}: bin_size given but the file has no Units table (no spike times)")
    if "spike_times" not in table.colnames:
        raise _invalid(f"{name}: the Units table has no 'spike_times' column")
    ids = np.asarray(table.id[:])
    rows = _select_units(ids, units, name)
    # One read of the flat spike times and their ends, instead of one read per unit.
    index = table["spike_times"]
    flat = np.asarray(index.target.data[:], dtype=np.float64)
    ends = np.asarray(index.data[:], dtype=np.int64)
    begins = np.concatenate([[0], ends[:-1]])
    spike_times = [flat[begins[row] : ends[row]] for row in rows]
    source = f"{name} (Units)"
    names = [str(int(ids[row])) for row in rows]
    counts = _spike_counts(
        spike_times,
        bin_size,
        start,
        stop,
        trial_starts,
        trial_length,
        source,
        [f"id {n}" for n in names],
    )
    rate = 1.0 / float(bin_size)
    if trial_starts is not None:
        return Recording(counts, "trials,time,channels", rate, names, source, None, trial_starts)
    return Recording(
        counts, "time,channels", rate, names, source, 0.0 if start is None else float(start)
    )


def _pick_columns(channels, num_channels: int, names: List[str], source: str) -> np.ndarray:
    if channels is None:
        return np.arange(num_channels)
    picked = []
    for channel in np.atleast_1d(np.asarray(channels, dtype=object)):
        if isinstance(channel, (int, np.integer)) and not isinstance(channel, bool):
            if not 0 <= int(channel) < num_channels:
                raise _invalid(
                    f"{source}: channel index {int(channel)} is out of range; expected 0 to "
                    f"{num_channels - 1}"
                )
            picked.append(int(channel))
        elif isinstance(channel, str) and channel in names:
            picked.append(names.index(channel))
        else:
            raise _invalid(
                f"{source}: channel {channel!r} is neither an index below {num_channels} nor a "
                f"channel name ({_listing(names)})"
            )
    return np.array(picked, dtype=np.int64)


def _nwb_series_data(nwbfile, name, series_name, channels, start, stop, trial_starts, trial_length):
    pynwb = _import("pynwb", name)
    series = _nwb_series(nwbfile, series_name, name)
    source = f"{name} (series '{series_name}')"
    data = series.data
    shape = tuple(data.shape)
    if len(shape) not in (1, 2):
        raise _invalid(f"{source}: data has shape {shape}; expected (time,) or (time, channels)")
    num_samples = shape[0]
    num_channels = 1 if len(shape) == 1 else shape[1]
    names = [str(i) for i in range(num_channels)]
    scale = np.full(num_channels, float(series.conversion))
    if isinstance(series, pynwb.ecephys.ElectricalSeries) and series.electrodes is not None:
        table = series.electrodes.table
        rows = np.asarray(series.electrodes.data[:])
        labels = table["label"][:] if "label" in table.colnames else table.id[:]
        if len(rows) == num_channels:
            names = [str(labels[row]) for row in rows]
        if series.channel_conversion is not None:
            scale = scale * np.asarray(series.channel_conversion[:], dtype=np.float64)
    columns = _pick_columns(channels, num_channels, names, source)
    offset = float(getattr(series, "offset", 0.0) or 0.0)

    rate = None if series.rate is None else float(series.rate)
    if rate is not None:
        first_time = float(series.starting_time or 0.0)
        times = None
    else:
        times = np.asarray(series.timestamps[:], dtype=np.float64)
        first_time = float(times[0]) if times.size else None

    def sample_index(time: float) -> int:
        """The first sample at or after `time`."""
        if rate is not None:
            position = (time - first_time) * rate
            return int(np.clip(np.ceil(position - _EDGE_TOLERANCE), 0, num_samples))
        return int(np.searchsorted(times, time, side="left"))

    def read(begin: int, end: int) -> np.ndarray:
        block = np.asarray(data[begin:end], dtype=np.float64)
        block = block.reshape(end - begin, num_channels)[:, columns]
        return block * scale[columns] + offset

    picked = [names[c] for c in columns]
    if trial_starts is not None:
        if rate is None:
            raise _invalid(
                f"{source}: has timestamps, not a rate; cutting trials needs regular samples"
            )
        length = _whole_bins(float(trial_length), 1.0 / rate)
        if length < 1:
            raise _invalid(f"{source}: trial_length {trial_length} s is shorter than one sample")
        windows = []
        for trial, trial_start in enumerate(trial_starts):
            begin = sample_index(float(trial_start))
            if begin + length > num_samples or trial_start < first_time - _EDGE_TOLERANCE / rate:
                raise _invalid(
                    f"{source}: trial {trial} ({trial_start} s + {trial_length} s) is outside the "
                    f"series ({first_time} s to {first_time + num_samples / rate} s)"
                )
            windows.append(read(begin, begin + length))
        starts = first_time + np.array([sample_index(float(s)) for s in trial_starts]) / rate
        return Recording(
            np.stack(windows), "trials,time,channels", rate, picked, source, None, starts
        )

    begin = 0 if start is None else sample_index(float(start))
    end = num_samples if stop is None else sample_index(float(stop))
    if end <= begin:
        raise _invalid(
            f"{source}: no samples in [{start}, {stop}) s; the series has {num_samples} samples "
            f"from {first_time} s"
        )
    values = read(begin, end)
    if rate is not None:
        return Recording(values, "time,channels", rate, picked, source, first_time + begin / rate)
    return Recording(
        values, "time,channels", None, picked, source, float(times[begin]), None, times[begin:end]
    )


# --- EDF / BDF ----------------------------------------------------------------------------------


def _edf_label(label: str) -> str:
    """EDF labels are padded and some writers end them with dots ('Fc5.'); compare without."""
    return label.strip().rstrip(".").lower()


def load_edf(path: PathLike, channels=None) -> Recording:
    """Reads an EDF, EDF+, BDF or BDF+ file (with pyEDFlib) as float64 physical values
    (e.g. µV), (time, channels), with the file's labels and sampling rate.

    ``channels`` picks signals by index or by label; labels match without case, padding or
    trailing dots (``"FC5"`` finds ``"Fc5."``). By default every signal except EDF+
    annotations is read; the picked signals must share one sampling rate.

    Raises :class:`IoError` for a missing file or one that is not EDF/BDF, and
    :class:`InvalidInputError` (a ValueError) naming the file and the channel or rates.
    """
    name = _existing_file(path)
    pyedflib = _import("pyedflib", name)
    try:
        reader = pyedflib.EdfReader(name)
    except OSError as error:
        raise _core.IoError(f"{name}: not a readable EDF/BDF file ({error})") from None
    try:
        labels = list(reader.getSignalLabels())
        rates = np.asarray(reader.getSampleFrequencies(), dtype=np.float64)
        lengths = np.asarray(reader.getNSamples(), dtype=np.int64)
        if channels is None:
            picked = list(range(len(labels)))
        else:
            keys = [_edf_label(label) for label in labels]
            picked = []
            for channel in np.atleast_1d(np.asarray(channels, dtype=object)):
                if isinstance(channel, (int, np.integer)) and not isinstance(channel, bool):
                    if not 0 <= int(channel) < len(labels):
                        raise _invalid(
                            f"{name}: channel index {int(channel)} is out of range; the file has "
                            f"{len(labels)} signals (0 to {len(labels) - 1})"
                        )
                    picked.append(int(channel))
                    continue
                matches = [i for i, key in enumerate(keys) if key == _edf_label(str(channel))]
                if len(matches) != 1:
                    problem = "is not a label" if not matches else "matches several labels"
                    raise _invalid(
                        f"{name}: channel {channel!r} {problem}; the file's labels are "
                        f"{_listing(labels, limit=100)}"
                    )
                picked.append(matches[0])
        if not picked:
            raise _invalid(f"{name}: no signals to read")
        picked_rates = sorted({float(rates[i]) for i in picked})
        if len(picked_rates) != 1:
            raise _invalid(
                f"{name}: the signals have different sampling rates ({picked_rates} Hz); pick "
                f"signals of one rate with channels="
            )
        num_samples = int(lengths[picked].min())
        data = np.empty((num_samples, len(picked)), dtype=np.float64)
        for column, signal in enumerate(picked):
            data[:, column] = reader.readSignal(signal, digital=False)[:num_samples]
    finally:
        reader.close()
    return Recording(data, "time,channels", picked_rates[0], [labels[i] for i in picked], name, 0.0)


# --- HDF5 ---------------------------------------------------------------------------------------


def load_hdf5(
    path: PathLike,
    dataset: str,
    layout: Optional[str] = None,
    sampling_rate: Optional[float] = None,
) -> Recording:
    """Reads the HDF5 dataset at ``dataset`` (e.g. ``"/recordings/lfp"``, with h5py).

    ``layout`` is how the stored array is laid out (one of ``trials,time,channels``,
    ``trials,channels,time``, ``time,channels``, ``channels,time``); by default a 3-D array
    is ``trials,time,channels``, a 2-D one ``time,channels`` and a 1-D one a single channel.
    The result is transposed to ``trials,time,channels`` or ``time,channels``, keeping the
    stored numeric dtype. ``sampling_rate`` defaults to the dataset's ``sampling_rate`` or
    ``rate`` attribute, if it has one.

    Raises :class:`IoError` for a missing file or one that is not HDF5, and
    :class:`InvalidInputError` (a ValueError) naming the file and the dataset.
    """
    name = _existing_file(path)
    h5py = _import("h5py", name)
    if not h5py.is_hdf5(name):
        raise _core.IoError(f"{name}: not an HDF5 file")
    with h5py.File(name, "r") as handle:
        node = handle.get(dataset)
        if not isinstance(node, h5py.Dataset):
            found: List[str] = []
            handle.visititems(
                lambda key, item: (
                    found.append("/" + key) if isinstance(item, h5py.Dataset) else None
                )
            )
            problem = "is missing" if node is None else "is a group, not a dataset"
            raise _invalid(
                f"{name}: dataset '{dataset}' {problem}; the file holds {_listing(found)}"
            )
        source = f"{name}:{node.name}"
        if node.dtype.kind not in "biuf":
            raise _invalid(f"{source}: dataset has dtype {node.dtype}; expected real numbers")
        values = node[()]
        if sampling_rate is None:
            for key in ("sampling_rate", "rate"):
                if key in node.attrs:
                    sampling_rate = float(np.asarray(node.attrs[key]).reshape(-1)[0])
                    break
    values = np.asarray(values)
    if layout is None:
        layouts = {1: "time", 2: "time,channels", 3: "trials,time,channels"}
        if values.ndim not in layouts:
            raise _invalid(
                f"{source}: dataset has shape {values.shape}; expected 1 to 3 dimensions"
            )
        layout = layouts[values.ndim]
    elif layout not in LAYOUTS:
        raise _invalid(f"{source}: layout '{layout}' is not one of {', '.join(LAYOUTS)}")
    axes = layout.split(",")
    if len(axes) != values.ndim:
        raise _invalid(
            f"{source}: dataset has shape {values.shape}, which does not fit layout '{layout}'"
        )
    if axes == ["time"]:
        values, layout = values[:, None], "time,channels"
    elif "trials" in axes:
        values = np.transpose(values, [axes.index(a) for a in ("trials", "time", "channels")])
        layout = "trials,time,channels"
    else:
        values = np.transpose(values, [axes.index(a) for a in ("time", "channels")])
        layout = "time,channels"
    names = [str(i) for i in range(values.shape[-1])]
    return Recording(np.ascontiguousarray(values), layout, sampling_rate, names, source)


# --- by extension -------------------------------------------------------------------------------


def load_recording(path: PathLike, **options) -> Recording:
    """Reads ``path`` with the reader for its extension (:data:`SUPPORTED_FORMATS`):
    ``.nwb`` → :func:`load_nwb`, ``.edf``/``.bdf`` → :func:`load_edf`, ``.h5``/``.hdf5``/``.hdf``
    → :func:`load_hdf5` (``dataset=`` is then required). ``options`` go to that reader.

    Raises :class:`InvalidInputError` (a ValueError) naming the file and listing the supported
    formats when the extension is not one of them, and :class:`IoError` when the file is missing.
    """
    name = os.fspath(path)
    extension = os.path.splitext(name)[1].lower()
    if extension not in SUPPORTED_FORMATS:
        raise _invalid(
            f"{name}: unsupported file type '{extension or '(no extension)'}'; supported formats: "
            f"{supported_formats()}"
        )
    if extension == ".nwb":
        return load_nwb(name, **options)
    if extension in (".edf", ".bdf"):
        return load_edf(name, **options)
    if "dataset" not in options:
        _existing_file(name)
        raise _invalid(f"{name}: an HDF5 file needs dataset= (the path of the array inside it)")
    return load_hdf5(name, **options)
