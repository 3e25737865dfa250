"""lrsmc: fit stochastic low-rank RNNs to neural recordings with variational sequential Monte Carlo.

The estimator :class:`LowRankRNN` is the usual entry point::

    import lrsmc
    rnn = lrsmc.LowRankRNN(rank=3, num_hidden=256, epochs=500).fit(X)  # X: trials × time × channels
    latents = rnn.filter(X).latents                                  # trials × time × rank
    generated = rnn.sample(trials=10, steps=200).observations
    points = rnn.fixed_points()

Functions over :class:`Model` objects (``filter``, ``sample``, ``simulate``, ``fit_model``,
``fixed_points``, ``load_model``, ``load_data``) mirror the command line's subcommands and give
the same numbers for the same seed and data. Recordings in NWB, EDF/BDF or HDF5 files are read
by ``load_nwb``, ``load_edf``, ``load_hdf5`` or ``load_recording`` (``pip install
lrsmc[formats]``); ``spike_times_to_counts`` bins spike times. The paper's measures of a fit
(D_stsp, D_H, spike statistics, bits per spike, PSTH R², ridge decoding) are in
:mod:`lrsmc.metrics`, and :func:`evaluate` scores a model on a recording as ``lrsmc evaluate``
does; :func:`report` writes those scores and the figures of a fit into one HTML page. Plots are in :mod:`lrsmc.plot`
(``pip install lrsmc[plot]``).

Errors raised by the engine carry its message and derive from :class:`Error` (a RuntimeError):
:class:`InvalidInputError` (also a ValueError), :class:`IoError` (an OSError),
:class:`OutOfMemoryError` (a MemoryError), :class:`NumericalError` (an ArithmeticError) and
:class:`CudaError`.
"""

from ._core import (
    CudaError,
    Dataset,
    EpochReport,
    Error,
    FixedPoint,
    FixedPointResult,
    InvalidInputError,
    IoError,
    Model,
    ModelConfig,
    NumericalError,
    OutOfMemoryError,
    __version__,
    built_with_cuda,
    cuda_available,
    presets,
)
from ._api import (
    DemoData,
    Evaluation,
    FilterResult,
    Samples,
    TrainingOutcome,
    as_dataset,
    demo_data,
    evaluate,
    filter,
    find_fixed_points,
    fit_model,
    fixed_points,
    latent_map,
    load_data,
    load_model,
    sample,
    save_model,
    simulate,
    smooth,
    SmoothResult,
)
from ._estimator import LowRankRNN, NotFittedError
from . import metrics


def report(fitted, observations, out_dir, **options):
    """Writes an HTML page judging a fit, with its figures, and returns its path (see
    :func:`lrsmc._report.report` for the options). Needs matplotlib (``pip install lrsmc[plot]``)."""
    from ._report import report as write_report

    return write_report(fitted, observations, out_dir, **options)

from ._formats import (
    Recording,
    load_edf,
    load_hdf5,
    load_nwb,
    load_recording,
    spike_times_to_counts,
)

__all__ = [
    "CudaError",
    "Dataset",
    "DemoData",
    "Evaluation",
    "EpochReport",
    "Error",
    "FilterResult",
    "FixedPoint",
    "FixedPointResult",
    "InvalidInputError",
    "IoError",
    "LowRankRNN",
    "Model",
    "ModelConfig",
    "NotFittedError",
    "NumericalError",
    "OutOfMemoryError",
    "Recording",
    "Samples",
    "SmoothResult",
    "TrainingOutcome",
    "__version__",
    "as_dataset",
    "built_with_cuda",
    "cuda_available",
    "demo_data",
    "evaluate",
    "filter",
    "find_fixed_points",
    "fit_model",
    "fixed_points",
    "latent_map",
    "load_data",
    "load_edf",
    "load_hdf5",
    "load_model",
    "load_nwb",
    "load_recording",
    "metrics",
    "presets",
    "report",
    "sample",
    "save_model",
    "simulate",
    "smooth",
    "spike_times_to_counts",
]
