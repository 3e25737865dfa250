"""The readers of recordings (NWB, EDF/BDF, HDF5), spike binning and `python -m lrsmc.convert`.
Expected values are computed independently: counts by hand, EDF values from the file's own
header and int16 records, NWB and HDF5 data from the arrays written."""

import importlib.util
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

import lrsmc


def needs(module):
    """Skips a test when an optional reader is missing; the `test` extra installs them all."""
    missing = importlib.util.find_spec(module) is None
    return pytest.mark.skipif(
        missing, reason=f"{module} is not installed (pip install 'lrsmc[formats]')"
    )


needs_pynwb, needs_pyedflib, needs_h5py = needs("pynwb"), needs("pyedflib"), needs("h5py")

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EEG_RAW = SHARED_DATA / "eeg" / "raw"


# --- spike_times_to_counts ----------------------------------------------------------------------

# Unit 0 has spikes on edges (0.1, 0.3: 0.3 / 0.1 rounds below 3), before the range (-0.1) and
# on the exclusive stop (1.0); unit 1 is empty; unit 2 has one spike on an edge.
SPIKES = [np.array([0.3, 0.0, 0.05, 0.1, 0.25, 0.99, 1.0, -0.1]), np.array([]), np.array([0.3])]


def test_counts_hand_computed():
    counts = lrsmc.spike_times_to_counts(SPIKES, 0.1, start=0.0, stop=1.0)
    expected = np.zeros((10, 3), dtype=np.int32)
    expected[:, 0] = [2, 1, 1, 1, 0, 0, 0, 0, 0, 1]
    expected[3, 2] = 1
    assert counts.dtype == np.int32
    np.testing.assert_array_equal(counts, expected)


def test_counts_default_range_ends_with_the_last_spike():
    counts = lrsmc.spike_times_to_counts(SPIKES, 0.1)  # start 0, last spike 1.0 opens bin 10
    assert counts.shape == (11, 3)
    assert counts[10, 0] == 1 and counts[:, 0].sum() == 7  # all but the spike at -0.1


def test_counts_shifted_start_and_partial_last_bin():
    # Bins [0.05, 0.25), [0.25, 0.45); the 0.05 s left before stop 0.5 is not a whole bin.
    counts = lrsmc.spike_times_to_counts(SPIKES, 0.2, start=0.05, stop=0.5)
    np.testing.assert_array_equal(counts, [[2, 0, 0], [2, 0, 1]])


def test_counts_trials():
    counts = lrsmc.spike_times_to_counts(SPIKES, 0.1, trial_starts=[0.0, 0.25], trial_length=0.2)
    expected = np.zeros((2, 2, 3), dtype=np.int32)
    expected[0, :, 0] = [2, 1]  # [0, 0.1): 0.0, 0.05; [0.1, 0.2): 0.1
    expected[1, :, 0] = [2, 0]  # [0.25, 0.35): 0.25, 0.3
    expected[1, 0, 2] = 1
    np.testing.assert_array_equal(counts, expected)


def test_counts_match_floor_division_away_from_edges():
    rng = np.random.default_rng(5)
    times = [rng.uniform(-1.0, 11.0, size) for size in (500, 0, 37)]
    counts = lrsmc.spike_times_to_counts(times, 0.25, start=0.0, stop=10.0)
    for unit, unit_times in enumerate(times):
        index = np.floor(unit_times / 0.25).astype(int)
        expected = np.bincount(index[(index >= 0) & (index < 40)], minlength=40)
        np.testing.assert_array_equal(counts[:, unit], expected)


def test_counts_errors_name_the_value():
    with pytest.raises(lrsmc.InvalidInputError, match=r"unit 1: spike time 1 is nan"):
        lrsmc.spike_times_to_counts([[0.1], [0.2, np.nan]], 0.1)
    with pytest.raises(ValueError, match=r"bin_size must be a positive finite number.*got 0"):
        lrsmc.spike_times_to_counts(SPIKES, 0)
    with pytest.raises(ValueError, match="no spike at or after start"):
        lrsmc.spike_times_to_counts([[], []], 0.1)
    with pytest.raises(ValueError, match="trial_starts given without trial_length"):
        lrsmc.spike_times_to_counts(SPIKES, 0.1, trial_starts=[0.0])
    with pytest.raises(ValueError, match="sequence of per-unit arrays"):
        lrsmc.spike_times_to_counts(np.array([0.1, 0.2]), 0.1)


# --- NWB ----------------------------------------------------------------------------------------

UNIT_IDS = [10, 20, 30]
UNIT_SPIKES = [[0.0, 0.05, 0.1, 0.25, 0.3, 0.99], [], [0.3, 0.75]]
RAW = np.arange(80 * 3, dtype=np.int16).reshape(80, 3) - 50  # (time, channels): 0.1 to 0.9 s
CONVERSION = 2.5e-6


@pytest.fixture(scope="module")
def nwb_file(tmp_path_factory):
    """Units with known spike times, an int16 ElectricalSeries at 100 Hz starting at 0.1 s,
    a TimeSeries with timestamps, and two trials."""
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.ecephys import ElectricalSeries

    nwbfile = NWBFile(
        session_description="lrsmc reader test",
        identifier="lrsmc-test",
        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
    )
    for unit_id, times in zip(UNIT_IDS, UNIT_SPIKES):
        nwbfile.add_unit(spike_times=times, id=unit_id)
    device = nwbfile.create_device(name="probe")
    group = nwbfile.create_electrode_group(
        name="shank", description="test shank", location="CA1", device=device
    )
    for _ in range(3):
        nwbfile.add_electrode(group=group, location="CA1")
    region = nwbfile.create_electrode_table_region(region=[0, 1, 2], description="all")
    nwbfile.add_acquisition(
        ElectricalSeries(
            name="lfp",
            data=RAW,
            electrodes=region,
            rate=100.0,
            starting_time=0.1,
            conversion=CONVERSION,
        )
    )
    nwbfile.add_acquisition(
        TimeSeries(name="speed", data=np.arange(5.0), unit="m/s", timestamps=np.arange(5) * 0.2)
    )
    nwbfile.add_trial(start_time=0.0, stop_time=0.3)
    nwbfile.add_trial(start_time=0.25, stop_time=0.6)
    path = tmp_path_factory.mktemp("nwb") / "session.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)
    return path


@needs_pynwb
def test_nwb_units_to_counts(nwb_file):
    recording = lrsmc.load_nwb(nwb_file, bin_size=0.1, stop=1.0)
    expected = lrsmc.spike_times_to_counts(UNIT_SPIKES, 0.1, start=0.0, stop=1.0)
    np.testing.assert_array_equal(recording.data, expected)
    np.testing.assert_array_equal(recording.data[:, 0], [2, 1, 1, 1, 0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(recording.data[:, 2], [0, 0, 0, 1, 0, 0, 0, 1, 0, 0])
    assert recording.channels == ["10", "20", "30"]
    assert recording.layout == "time,channels" and recording.sampling_rate == pytest.approx(10.0)


@needs_pynwb
def test_nwb_units_selected_by_id(nwb_file):
    recording = lrsmc.load_nwb(nwb_file, units=[30, 10], bin_size=0.5, stop=1.0)
    np.testing.assert_array_equal(recording.data, [[1, 5], [1, 1]])
    assert recording.channels == ["30", "10"]
    with pytest.raises(
        ValueError, match=r"unit id\(s\) \[7\] are not in the Units table; its ids are 10, 20, 30"
    ):
        lrsmc.load_nwb(nwb_file, units=[7], bin_size=0.1)


@needs_pynwb
def test_nwb_units_in_trials(nwb_file):
    recording = lrsmc.load_nwb(nwb_file, bin_size=0.1, trials=True)  # shortest trial: 0.3 s
    assert recording.layout == "trials,time,channels"
    expected = np.zeros((2, 3, 3), dtype=np.int32)
    expected[0, :, 0] = [2, 1, 1]  # [0, 0.3): 0.0, 0.05 | 0.1 | 0.25
    expected[1, :, 0] = [2, 0, 0]  # [0.25, 0.55): 0.25, 0.3 | - | -
    expected[1, 0, 2] = 1
    np.testing.assert_array_equal(recording.data, expected)
    np.testing.assert_allclose(recording.trial_starts, [0.0, 0.25])


@needs_pynwb
def test_nwb_electrical_series(nwb_file):
    recording = lrsmc.load_nwb(nwb_file, series="lfp")
    np.testing.assert_allclose(recording.data, RAW * CONVERSION, rtol=1e-12)
    assert recording.data.dtype == np.float64 and recording.sampling_rate == 100.0
    assert recording.channels == ["0", "1", "2"] and recording.start_time == pytest.approx(0.1)

    window = lrsmc.load_nwb(nwb_file, series="lfp", channels=[2, 0], start=0.2, stop=0.25)
    np.testing.assert_allclose(window.data, RAW[10:15][:, [2, 0]] * CONVERSION, rtol=1e-12)
    assert window.start_time == pytest.approx(0.2)

    trials = lrsmc.load_nwb(
        nwb_file, series="lfp", trials=True, trial_length=0.1, trial_align="stop_time"
    )
    assert trials.data.shape == (2, 10, 3)
    np.testing.assert_allclose(trials.data[0], RAW[20:30] * CONVERSION, rtol=1e-12)  # 0.3 s
    np.testing.assert_allclose(trials.data[1], RAW[50:60] * CONVERSION, rtol=1e-12)  # 0.6 s
    with pytest.raises(ValueError, match=r"trial 0 \(0.0 s \+ 0.1 s\) is outside the series"):
        lrsmc.load_nwb(nwb_file, series="lfp", trials=True, trial_length=0.1)


@needs_pynwb
def test_nwb_timestamped_series(nwb_file):
    recording = lrsmc.load_nwb(nwb_file, series="speed", start=0.3)
    np.testing.assert_array_equal(recording.data[:, 0], [2.0, 3.0, 4.0])
    assert recording.sampling_rate is None
    np.testing.assert_allclose(recording.timestamps, [0.4, 0.6, 0.8])


@needs_pynwb
def test_nwb_errors_name_the_file_and_the_choices(nwb_file):
    with pytest.raises(
        ValueError, match=r"session.nwb: series 'lfpp' is missing; the file holds lfp, speed"
    ):
        lrsmc.load_nwb(nwb_file, series="lfpp")
    with pytest.raises(
        ValueError,
        match=r"give bin_size= to bin the spike times of the 3 units, or series= one of lfp, speed",
    ):
        lrsmc.load_nwb(nwb_file)
    with pytest.raises(ValueError, match="trials table has no column 'go_cue'"):
        lrsmc.load_nwb(nwb_file, bin_size=0.1, trials=True, trial_align="go_cue")


# --- EDF ----------------------------------------------------------------------------------------


def edf_header(path):
    """The EDF header fields the test checks against, parsed from the file's fixed-width ASCII
    header (EDF specification: 256 bytes, then 256 bytes per signal, field by field)."""
    with open(path, "rb") as stream:
        main = stream.read(256)
        count = int(main[252:256])
        fields = stream.read(256 * count)
    widths = [
        ("label", 16),
        ("transducer", 80),
        ("dimension", 8),
        ("physical_min", 8),
        ("physical_max", 8),
        ("digital_min", 8),
        ("digital_max", 8),
        ("prefilter", 80),
        ("samples", 8),
        ("reserved", 32),
    ]
    header, offset = {}, 0
    for name, width in widths:
        header[name] = [
            fields[offset + i * width : offset + (i + 1) * width].decode().strip()
            for i in range(count)
        ]
        offset += width * count
    header["header_bytes"] = int(main[184:192])
    header["records"] = int(main[236:244])
    header["record_seconds"] = float(main[244:252])
    return header


def eeg_file(name="S001R01.edf"):
    path = EEG_RAW / name
    if not path.is_file():
        pytest.skip(
            f"EEG recording {name} not found at {path} (../shared/data next to the checkout)"
        )
    return path


@needs_pyedflib
def test_edf_matches_its_header_and_records():
    path = eeg_file()
    header = edf_header(path)
    signals = [i for i, label in enumerate(header["label"]) if label != "EDF Annotations"]
    per_record = int(header["samples"][signals[0]])
    recording = lrsmc.load_edf(path)

    assert recording.data.shape == (header["records"] * per_record, len(signals))  # (9760, 64)
    assert recording.data.shape == (9760, 64)
    assert recording.sampling_rate == pytest.approx(per_record / header["record_seconds"])  # 160
    assert recording.channels == [header["label"][i] for i in signals]
    assert recording.channels[:2] == ["Fc5.", "Fc3."] and recording.layout == "time,channels"
    assert "S001R01.edf: 9760 × 64 (layout time,channels), float64, 160 Hz" in repr(recording)

    # The first record's samples of the first and last signal, from the int16 data on disk.
    with open(path, "rb") as stream:
        stream.seek(header["header_bytes"])
        record = np.frombuffer(stream.read(2 * sum(int(n) for n in header["samples"])), "<i2")
    starts = np.cumsum([0] + [int(n) for n in header["samples"]])
    for signal in (signals[0], signals[-1]):
        digital = record[starts[signal] : starts[signal] + per_record].astype(np.float64)
        pmin, pmax = float(header["physical_min"][signal]), float(header["physical_max"][signal])
        dmin, dmax = float(header["digital_min"][signal]), float(header["digital_max"][signal])
        physical = pmin + (digital - dmin) * (pmax - pmin) / (dmax - dmin)
        np.testing.assert_allclose(recording.data[:per_record, signal], physical, atol=1e-9)


@needs_pyedflib
def test_edf_channels_by_label_and_index():
    path = eeg_file()
    everything = lrsmc.load_edf(path)
    picked = lrsmc.load_edf(path, channels=["CZ", 0, "Iz."])
    assert picked.channels == ["Cz..", "Fc5.", "Iz.."]
    np.testing.assert_array_equal(picked.data, everything.data[:, [10, 0, 63]])
    with pytest.raises(
        ValueError,
        match=r"S001R01.edf: channel 'Xy' is not a label; the file's labels are Fc5\., Fc3\.",
    ):
        lrsmc.load_edf(path, channels=["Xy"])
    with pytest.raises(
        ValueError, match="channel index 64 is out of range; the file has 64 signals"
    ):
        lrsmc.load_edf(path, channels=[64])


@needs_pyedflib
def test_edf_reproduces_the_shipped_zscored_file():
    """The README of ../shared/data/eeg: EEG_data_zscored_reconstructed.npy is the per-channel
    z-score of S001R01.edf's first 9640 samples."""
    reference = SHARED_DATA / "eeg" / "EEG_data_zscored_reconstructed.npy"
    if not reference.is_file():
        pytest.skip(f"{reference.name} not found at {reference}")
    data = lrsmc.load_edf(eeg_file()).data[:9640]
    zscored = (data - data.mean(axis=0)) / data.std(axis=0)
    np.testing.assert_allclose(zscored, np.load(reference), atol=1e-5)


# --- HDF5 ---------------------------------------------------------------------------------------


@pytest.fixture()
def hdf5_file(tmp_path):
    import h5py

    values = np.arange(3 * 50, dtype=np.float32).reshape(3, 50)  # (channels, time)
    path = tmp_path / "recording.h5"
    with h5py.File(path, "w") as handle:
        dataset = handle.create_dataset("session/lfp", data=values)
        dataset.attrs["rate"] = 250.0
        handle.create_dataset("counts", data=np.ones((4, 6, 2), dtype=np.int16))
    return path, values


@needs_h5py
def test_hdf5_dataset_by_path(hdf5_file):
    path, values = hdf5_file
    recording = lrsmc.load_hdf5(path, "/session/lfp", layout="channels,time")
    np.testing.assert_array_equal(recording.data, values.T)
    assert recording.data.dtype == np.float32 and recording.layout == "time,channels"
    assert recording.sampling_rate == 250.0 and recording.source.endswith(
        "recording.h5:/session/lfp"
    )
    counts = lrsmc.load_recording(path, dataset="counts")
    assert counts.layout == "trials,time,channels" and counts.data.shape == (4, 6, 2)
    assert counts.sampling_rate is None
    np.testing.assert_array_equal(np.asarray(counts), np.ones((4, 6, 2)))
    dataset = lrsmc.as_dataset(counts)  # a Recording is accepted wherever an array is
    assert (dataset.num_trials, dataset.num_steps, dataset.num_channels) == (4, 6, 2)


@needs_h5py
def test_hdf5_errors_list_the_datasets(hdf5_file):
    path, _ = hdf5_file
    with pytest.raises(
        ValueError,
        match=r"recording.h5: dataset 'lfp' is missing; the file holds /counts, /session/lfp",
    ):
        lrsmc.load_hdf5(path, "lfp")
    with pytest.raises(ValueError, match="dataset 'session' is a group, not a dataset"):
        lrsmc.load_hdf5(path, "session")
    with pytest.raises(
        ValueError, match=r"shape \(3, 50\), which does not fit layout 'trials,time,channels'"
    ):
        lrsmc.load_hdf5(path, "session/lfp", layout="trials,time,channels")
    with pytest.raises(ValueError, match="recording.h5: an HDF5 file needs dataset="):
        lrsmc.load_recording(path)


# --- unsupported and missing files --------------------------------------------------------------


def test_unsupported_file_lists_the_formats(tmp_path):
    path = tmp_path / "recording.mat"
    path.write_bytes(b"MATLAB 5.0")
    with pytest.raises(
        ValueError,
        match=r"recording.mat: unsupported file type '.mat'; supported formats: NWB \(load_nwb\): .nwb; EDF",
    ) as error:
        lrsmc.load_recording(path)
    for extension in (".nwb", ".edf", ".bdf", ".h5", ".hdf5", ".npz"):
        assert extension in str(error.value)


@pytest.mark.parametrize(
    "reader, name",
    [
        (lrsmc.load_edf, "absent.edf"),
        (lrsmc.load_recording, "absent.nwb"),
        (lambda path: lrsmc.load_hdf5(path, "x"), "absent.h5"),
    ],
)
def test_missing_file_is_named(tmp_path, reader, name):
    with pytest.raises(lrsmc.IoError, match=f"{name}: cannot open: no such file"):
        reader(tmp_path / name)


@needs_pyedflib
@needs_pynwb
def test_wrong_content_is_an_io_error(tmp_path):
    path = tmp_path / "notes.edf"
    path.write_text("not an EDF file\n")
    with pytest.raises(lrsmc.IoError, match="notes.edf: not a readable EDF/BDF file"):
        lrsmc.load_edf(path)
    path = tmp_path / "notes.nwb"
    path.write_text("not an NWB file\n")
    with pytest.raises(lrsmc.IoError, match="notes.nwb: not a readable NWB file"):
        lrsmc.load_nwb(path, bin_size=0.1)


def test_missing_reader_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "recording.edf"
    path.write_bytes(b"0")
    monkeypatch.setitem(sys.modules, "pyedflib", None)  # import pyedflib now fails
    with pytest.raises(
        ImportError,
        match=r"recording.edf: reading it needs the package 'pyedflib'; install the readers with: pip install 'lrsmc\[formats\]'",
    ):
        lrsmc.load_edf(path)


# --- python -m lrsmc.convert --------------------------------------------------------------------


def run_convert(*arguments):
    return subprocess.run(
        [sys.executable, "-m", "lrsmc.convert", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_pynwb
def test_convert_nwb_counts_end_to_end(nwb_file, tmp_path):
    output = tmp_path / "counts.npz"
    done = run_convert(
        nwb_file, output, "--bin-size", "0.1", "--stop", "1.0", "--units", "10", "30"
    )
    assert done.returncode == 0, done.stderr
    assert "10 steps × 2 channels (layout time,channels), int32, 10 Hz" in done.stdout
    expected = lrsmc.spike_times_to_counts([UNIT_SPIKES[0], UNIT_SPIKES[2]], 0.1, stop=1.0)
    data = lrsmc.load_data(output, layout="time,channels")  # the command line's reader
    np.testing.assert_array_equal(data.observations[0], expected)
    with np.load(output) as archive:
        assert str(archive["layout"]) == "time,channels"
        assert list(archive["channels"]) == ["10", "30"] and float(archive["sampling_rate"]) == 10.0
        assert archive["observations"].dtype == np.int32

    if os.environ.get("LRSMC_CLI"):  # the C++ command line reads the archive too
        fitted = subprocess.run(
            [
                os.environ["LRSMC_CLI"],
                "fit",
                "--data",
                str(output),
                "--layout",
                "time,channels",
                "--observation",
                "poisson",
                "--rank",
                "1",
                "--hidden",
                "4",
                "--epochs",
                "1",
                "--window",
                "5",
                "--windows-per-epoch",
                "2",
                "--batch-size",
                "2",
                "--particles",
                "2",
                "--out",
                str(tmp_path / "model.npz"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert fitted.returncode == 0, fitted.stderr
        assert "counts.npz: 1 recording × 10 steps × 2 channels" in fitted.stderr


@needs_pyedflib
def test_convert_edf_end_to_end(tmp_path):
    path = eeg_file()
    output = tmp_path / "eeg.npz"
    done = run_convert(path, output, "--channels", "Fc5", "Cz", "63")
    assert done.returncode == 0, done.stderr
    assert "9760 steps × 3 channels (layout time,channels), float64, 160 Hz" in done.stdout
    expected = lrsmc.load_edf(path, channels=["Fc5", "Cz", 63]).data
    np.testing.assert_array_equal(
        lrsmc.load_data(output, layout="time,channels").observations[0], expected
    )


@needs_pynwb
def test_convert_keeps_existing_output_and_refuses_bad_input(nwb_file, tmp_path):
    output = tmp_path / "out.npz"
    output.write_bytes(b"keep me")
    done = run_convert(nwb_file, output, "--series", "lfp")
    assert done.returncode == 2
    assert "out.npz: exists; not replaced (give --force to replace it)" in done.stderr
    assert output.read_bytes() == b"keep me"
    done = run_convert(nwb_file, output, "--series", "lfp", "--force")
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(output)["observations"], RAW * CONVERSION, rtol=1e-12)

    unsupported = tmp_path / "data.csv"
    unsupported.write_text("1,2\n")
    done = run_convert(unsupported, tmp_path / "csv.npz")
    assert (
        done.returncode == 2
        and "data.csv: unsupported file type '.csv'; supported formats: NWB" in done.stderr
    )
    assert not (tmp_path / "csv.npz").exists()
    done = run_convert(nwb_file, tmp_path / "x.npz", "--dataset", "/a")
    assert (
        done.returncode == 2
        and "--dataset does not apply to NWB files; it takes --bin-size" in done.stderr
    )
    done = run_convert(tmp_path / "absent.nwb", tmp_path / "y.npz", "--bin-size", "0.1")
    assert done.returncode == 2 and "absent.nwb: cannot open: no such file" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "out.npz"]  # no temporaries
