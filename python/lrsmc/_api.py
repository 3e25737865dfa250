"""Functions over models that mirror the command line's subcommands (fit, filter, sample,
simulate, fixed-points): the same defaults, the same engine calls, the same numbers for the same
seed and data. The estimator in ``_estimator.py`` is built on them."""

from __future__ import annotations

import copyreg
import functools
import inspect
import numbers
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from . import _core, _progress

PathLike = Union[str, "os.PathLike[str]"]

#: The data layouts of design.md, as the command line's ``--layout`` spells them.
LAYOUTS = ("trials,time,channels", "trials,channels,time", "time,channels", "channels,time")


# --- arguments ----------------------------------------------------------------------------------

_INT_MAX = 2**31 - 1
#: Integer arguments and their ranges, checked before the engine sees them, so that a bad one is
#: an InvalidInputError naming it instead of the bindings' TypeError.
_INTEGER_RANGES = {
    "seed": (0, 2**64 - 1),
    "teacher_seed": (0, 2**64 - 1),
    "epochs": (1, _INT_MAX),
    "trials": (1, _INT_MAX),
    "steps": (1, _INT_MAX),
    "particles": (1, _INT_MAX),
    "batch_size": (1, _INT_MAX),
    "window": (1, _INT_MAX),
    "windows_per_epoch": (1, _INT_MAX),
    "eval_every": (1, _INT_MAX),
    "eval_particles": (0, _INT_MAX),
    "checkpoint_every": (0, _INT_MAX),
    "patience": (0, _INT_MAX),
    "burn_in": (0, _INT_MAX),
    "forward_steps": (0, _INT_MAX),
    "threads": (0, _INT_MAX),
    "numerical": (0, _INT_MAX),
    "num_starts": (1, _INT_MAX),
    "stsp_samples": (1, _INT_MAX),
    "hann_window": (0, _INT_MAX),
    "max_steps": (2, _INT_MAX),
    "trajectories": (1, _INT_MAX),
    "repeats": (1, _INT_MAX),
}


def _check_integer(value, name: str) -> None:
    low, high = _INTEGER_RANGES[name]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise _core.InvalidInputError(
            f"{name} must be an integer from {low} to {high}; "
            f"got {value!r} ({type(value).__name__})"
        )
    if not low <= int(value) <= high:
        raise _core.InvalidInputError(
            f"{name} is out of range; got {int(value)}, expected {low} to {high}"
        )


def _checked_arguments(function):
    """Checks the integer arguments of `function` named in _INTEGER_RANGES (None is left to the
    function: it means a default)."""
    signature = inspect.signature(function)
    checked = [name for name in signature.parameters if name in _INTEGER_RANGES]

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        for name in checked:
            if name in bound.arguments and bound.arguments[name] is not None:
                _check_integer(bound.arguments[name], name)
        return function(*args, **kwargs)

    return wrapper


# --- data ---------------------------------------------------------------------------------------


def _resolve_layout(array: np.ndarray, layout: Optional[str], name: str) -> str:
    """``None`` means trials×time×channels for a 3-D array and one long time×channels recording
    for a 2-D one; anything else goes to the engine, which checks it against the shape."""
    if layout is not None:
        return layout
    if array.ndim not in (2, 3):
        raise _core.InvalidInputError(
            f"{name}: array has {array.ndim} dimension(s), shape {array.shape}; expected 3 for "
            "layout (trials,time,channels) or 2 for one recording (time,channels). Reshape your "
            f"data: {name}.reshape(-1, 1) for one channel, {name}.reshape(1, -1) for one time step"
        )
    return "time,channels" if array.ndim == 2 else "trials,time,channels"


def _check_channels(array: np.ndarray, layout: str, name: str) -> None:
    """An array with no channels is refused in scikit-learn's words (it counts features)."""
    axes = layout.split(",")
    if array.ndim == len(axes) and "channels" in axes and array.shape[axes.index("channels")] == 0:
        raise _core.InvalidInputError(
            f"{name}: 0 feature(s) (shape={array.shape}) while a minimum of 1 is required; "
            f"got no channels (layout {layout}), expected at least 1"
        )


def _as_array(values, name: str = "data") -> np.ndarray:
    scipy_sparse = sys.modules.get("scipy.sparse")  # a sparse matrix implies scipy is imported
    if scipy_sparse is not None and scipy_sparse.issparse(values):
        raise _core.InvalidInputError(
            f"{name}: sparse input is not supported; got {type(values).__name__}, "
            "expected a dense array (convert with .toarray())"
        )
    # np.asarray does not copy a float64 array; the bindings read a C-contiguous one in place.
    array = np.asarray(values)
    if array.dtype == object:
        # Numbers held as Python objects are read as numbers, as scikit-learn does; anything
        # else is a TypeError naming the array.
        try:
            return array.astype(np.float64)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{name}: array has dtype object and holds a value that is not a number ({error}); "
                f"expected real numbers (got {type(values).__name__})"
            ) from None
    if array.dtype.kind == "c":
        raise _core.InvalidInputError(
            f"{name}: array has dtype {array.dtype}; expected real numbers (bool, integer or "
            "float). Complex data not supported: pass the real part or the magnitude"
        )
    if array.dtype.kind not in "biuf":
        raise _core.InvalidInputError(
            f"{name}: array has dtype {array.dtype}; expected real numbers (bool, integer or float)"
        )
    return array


def as_dataset(
    observations,
    layout: Optional[str] = None,
    inputs=None,
    source: str = "X",
    allow_missing: bool = False,
) -> _core.Dataset:
    """A :class:`Dataset` from an array (or an existing Dataset, returned as it is).

    ``layout`` is one of :data:`LAYOUTS`; ``None`` picks ``trials,time,channels`` for 3-D
    arrays and ``time,channels`` (one long recording, trained on random windows) for 2-D ones.
    ``inputs`` has the same layout. Raises :class:`InvalidInputError` naming ``source``, the
    shape and the layout when the array does not fit the layout, has no channels, holds NaN or
    infinity, or is sparse, complex or not numeric; an object array is read as numbers, and one
    holding something else is a TypeError. With ``allow_missing`` NaN entries are missing values
    (held-out channels, dropped entries; ``--allow-missing``), left out of the likelihood: pass
    the Dataset to ``filter``, ``smooth``, ``evaluate`` or ``fit``, where ``proposal="auto"`` is
    then the bootstrap proposal.
    """
    if isinstance(observations, _core.Dataset):
        if inputs is not None:
            raise _core.InvalidInputError(f"{source}: inputs given with a Dataset; put them in it")
        return observations
    array = _as_array(observations, source)
    layout = _resolve_layout(array, layout, source)
    _check_channels(array, layout, source)
    input_array = None if inputs is None else _as_array(inputs, f"{source} inputs")
    return _core.make_dataset(array, layout, input_array, source, allow_missing)


def _check_data(data: _core.Dataset, model: _core.Model) -> None:
    """The command line's data checks: a channel mismatch is an error naming the layout (and the
    one that would match); suspicious readings are UserWarnings."""
    for message in _core.data_warnings(data, model):
        warnings.warn(message, UserWarning, stacklevel=3)


def load_data(
    path: PathLike,
    layout: str = "trials,time,channels",
    field: str = "",
    inputs: Optional[PathLike] = None,
    inputs_field: str = "",
    allow_missing: bool = False,
) -> _core.Dataset:
    """Reads a recording exactly as ``lrsmc fit --data PATH --layout ... --field ... --inputs ...``
    does: an .npy file, or the entry ``field`` of an .npz (by default the only entry, or one
    called ``observations`` or ``data``), of any numeric dtype, read as float64. The returned
    :class:`Dataset` is accepted wherever an array is. ``allow_missing``: NaN entries are
    missing values (``--allow-missing``), left out of the likelihood."""
    return _core.load_dataset(
        os.fspath(path), layout, field, "" if inputs is None else os.fspath(inputs), inputs_field, allow_missing
    )


@dataclass
class DemoData:
    """Data simulated from the demo's teacher network (see :func:`demo_data`)."""

    observations: np.ndarray  #: (trials, steps, 20) Gaussian channels
    latents: np.ndarray  #: (trials, steps, 2) the teacher's latent states
    rates: np.ndarray  #: (trials, steps, 20) noise-free read-out
    teacher: _core.Model  #: the teacher (rank 2, 20 relu units)


@_checked_arguments
def demo_data(trials: int = 150, steps: int = 75, seed: int = 1, teacher_seed: int = 7) -> DemoData:
    """The built-in demonstration data of ``lrsmc demo``: a rank-2 teacher RNN of 20 relu units
    whose latent state follows a noisy limit cycle, observed through 20 Gaussian channels.
    ``demo_data()`` draws the same 150 trials × 75 steps as ``lrsmc demo`` (seed 1)."""
    teacher = _core.oscillator_teacher(teacher_seed)
    drawn = sample(teacher, trials, steps, seed=seed)
    return DemoData(drawn.observations, drawn.latents, drawn.rates, teacher)


# --- devices ------------------------------------------------------------------------------------


def _device(device: str) -> str:
    """The backend to use: ``auto`` is the GPU when one answers and the CPU otherwise,
    for every operation, as on the command line. Asking for ``cuda`` without a usable device
    raises :class:`CudaError` before any work starts."""
    if device == "cuda" and not _core.cuda_available():
        reason = (
            "no CUDA device answers"
            if _core.built_with_cuda
            else "lrsmc was built without CUDA (reinstall with nvcc on PATH or LRSMC_ENABLE_CUDA=ON)"
        )
        raise _core.CudaError(f"device 'cuda' is not available: {reason}; use device='cpu' or 'auto'")
    return device


# --- inference ----------------------------------------------------------------------------------


@dataclass
class FilterResult:
    """What the particle filter returns (``lrsmc filter``). Arrays own their memory."""

    elbo: float  #: mean over trials of the ELBO per time step
    elbo_per_trial: np.ndarray  #: (trials,)
    latents: np.ndarray  #: (trials, steps, rank) posterior means Σ_k W_t^k z_t^k
    particles: Optional[np.ndarray] = None  #: (trials, steps, K, rank), before resampling
    log_weights: Optional[np.ndarray] = None  #: (trials, steps, K), normalised
    ancestors: Optional[np.ndarray] = None  #: (trials, steps, K) int32
    resampled: Optional[np.ndarray] = None  #: (trials, steps) bool


#: A filter or sample call with progress on runs in this many parts (of whole trials) once its
#: first part shows that it will last longer than the progress bar's delay, as ``lrsmc filter``
#: does.
_PARTS = 20


def _mean_in_order(values: np.ndarray) -> float:
    """The mean as the engine takes it (a running float64 sum in trial order, then one division),
    so that a filter run in parts reports the same ELBO, bit for bit, as one call."""
    total = 0.0
    for value in values.tolist():
        total += value
    return total / len(values)


def _in_parts(call: Callable[[int, int], dict], trials: int, bar) -> dict:
    """``call(first_trial, num_trials)`` over every trial in _PARTS parts of whole trials,
    advancing `bar` after each, when the first part shows that the work outlasts the bar's delay;
    otherwise the rest in one call. The arrays of the parts (trials first) are joined; every trial
    keeps its random-number address, so the result equals one call's. Entries that are not
    arrays are dropped."""
    bounds = sorted(set(trials * part // _PARTS for part in range(_PARTS + 1)))
    started = time.monotonic()
    first = call(0, bounds[1])
    bar.update(bounds[1])
    elapsed = time.monotonic() - started
    if elapsed * trials / bounds[1] < _progress.DELAY_SECONDS:
        bounds = [0, bounds[1], trials]
    # Each part's arrays are copied into the result at once, so at most one part is held twice.
    out = {}
    for name, values in first.items():
        if isinstance(values, np.ndarray):
            out[name] = np.empty((trials,) + values.shape[1:], dtype=values.dtype)
            out[name][: bounds[1]] = values
    del first
    for begin, end in zip(bounds[1:-1], bounds[2:]):
        part = call(begin, end - begin)
        for name in out:
            out[name][begin:end] = part[name]
        del part
        bar.update(end - begin)
    return out


@_checked_arguments
def _filter_keywords(particles, proposal, resampling, resample_threshold, t_forward, seed, device, threads,
                     precision) -> Dict[str, Any]:
    """The engine's keywords of a filter call (``_core.filter``, ``_core.smooth``)."""
    return dict(
        particles=particles,
        proposal=proposal,
        resampling=resampling,
        resample_threshold=resample_threshold,
        t_forward=t_forward,
        seed=seed,
        device=_device(device),
        threads=threads,
        precision=precision,
    )


def filter(
    model: _core.Model,
    observations,
    *,
    layout: Optional[str] = None,
    inputs=None,
    particles: int = 1000,
    proposal: str = "auto",
    resampling: str = "systematic",
    resample_threshold: float = 1.0,
    t_forward: int = 0,
    seed: int = 0,
    device: str = "auto",
    threads: int = 0,
    precision: str = "float32",
    return_particles: bool = False,
    progress: _progress.Progress = "auto",
) -> FilterResult:
    """Runs the particle filter over every trial (``lrsmc filter``; 1000 particles by default).

    ``proposal='auto'`` is the model's encoder proposal when it has an encoder, the optimal
    (Kalman) proposal for Gaussian identity read-outs and the bootstrap proposal otherwise.
    ``t_forward``: the last steps of each trial are a forecast, drawn from the dynamics alone
    (the encoder does not see them) and weighed by their observations. A long recording (``time,channels``) is filtered as one trial.
    ``precision`` is the CPU's arithmetic (``--precision``): ``"float32"`` (packed, the fast
    path), ``"float64"`` (the reference) or ``"float32-device"`` (the CUDA kernels' order).

    ``progress``: a call over several trials that lasts longer than a few seconds shows a
    progress bar over trials, ``"auto"`` in a terminal or notebook, True wherever stderr goes,
    False never. Such a call runs in parts of whole trials (the same numbers as one call, in
    arrays assembled from the parts); the engine reports no progress within a trial, so one long
    recording shows none.
    """
    progress = _progress.resolve(progress)
    data = as_dataset(observations, layout, inputs)
    _check_data(data, model)
    options = _filter_keywords(
        particles, proposal, resampling, resample_threshold, t_forward, seed, device, threads, precision
    )
    options["store_particles"] = return_particles
    bar = None
    if data.num_trials > 1:
        bar = _progress.bar(progress, data.num_trials, "lrsmc filter", "trial")
    try:
        if bar is None or bar.disable:
            out = _core.filter(model, data, **options)
        else:
            out = _in_parts(
                lambda first, count: _core.filter(model, data, first_trial=first, num_trials=count, **options),
                data.num_trials,
                bar,
            )
            out["elbo"] = _mean_in_order(out["elbo_per_trial"])
    finally:
        if bar is not None:
            bar.close()
    if return_particles:
        out["resampled"] = out["resampled"].view(bool)  # uint8 0/1 → bool, no copy
    return FilterResult(**out)


@dataclass
class SmoothResult:
    """Backward-simulation smoothing (``lrsmc filter --smooth``). Arrays own their memory."""

    elbo: float  #: the forward filter's ELBO per time step, mean over trials
    elbo_per_trial: np.ndarray  #: (trials,)
    latents: np.ndarray  #: (trials, steps, rank) smoothed means: the trajectories' mean
    trajectories: np.ndarray  #: (trials, trajectories, steps, rank) draws from the smoother


def smooth(
    model: _core.Model,
    observations,
    *,
    layout: Optional[str] = None,
    inputs=None,
    particles: int = 1000,
    trajectories: int = 100,
    proposal: str = "auto",
    resampling: str = "systematic",
    resample_threshold: float = 1.0,
    t_forward: int = 0,
    seed: int = 0,
    device: str = "auto",
    threads: int = 0,
    precision: str = "float32",
) -> SmoothResult:
    """Smoothed latents of every trial (``lrsmc filter --smooth``): the filter runs with
    ``particles`` particles and the given proposal, then ``trajectories`` trajectories per trial
    are drawn backwards through its particles, each step's candidates weighed by their filtering
    weight and the model's transition density to the trajectory's next state (FFBSi; the
    reference's smoother pairs slot by slot instead). ``latents`` are the trajectories' mean."""
    data = as_dataset(observations, layout, inputs)
    _check_data(data, model)
    options = _filter_keywords(
        particles, proposal, resampling, resample_threshold, t_forward, seed, device, threads, precision
    )
    return SmoothResult(**_core.smooth(model, data, trajectories=trajectories, **options))


@dataclass
class Evaluation:
    """A model scored on a recording (``lrsmc evaluate``): the ELBO per step, and for each measure
    its values over the generated data sets with the same measure for a baseline beside them."""

    elbo: float  #: per time step, mean over trials
    trials: int
    steps: int  #: steps scored per trial
    channels: int
    #: name → {'description', 'values', 'median', 'mad', 'baseline', 'baseline_values',
    #: 'baseline_median'}
    metrics: Dict[str, Dict[str, Any]] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"ELBO {self.elbo:.6f} per step ({self.trials} trials x {self.steps} steps)"]
        lines.append(f"{'metric':<26} {'median':>12} {'MAD':>10}   {'baseline':>12}  baseline")
        for name, m in self.metrics.items():
            lines.append(
                f"{name:<26} {m['median']:>12.5g} {m['mad']:>10.3g}   {m['baseline_median']:>12.5g}  {m['baseline']}"
            )
        return "\n".join(lines)


@_checked_arguments
def evaluate(
    model: _core.Model,
    observations,
    *,
    layout: Optional[str] = None,
    inputs=None,
    particles: int = 1000,
    proposal: str = "auto",
    repeats: int = 1,
    burn_in: int = 0,
    max_steps: int = 10000,
    trajectories: int = 20,
    hann_window: int = 0,
    spectrum_smoothing: float = 20.0,
    frequency_cutoff: int = 10000,
    stsp_samples: int = 1000,
    bin_seconds: float = 1.0,
    held_out_channels: Sequence[int] = (),
    forward_steps: int = 0,
    conditions: Optional[Sequence[int]] = None,
    behaviour=None,
    seed: int = 0,
    device: str = "auto",
    threads: int = 0,
    precision: str = "float32",
) -> Evaluation:
    """Scores ``model`` on a recording as ``lrsmc evaluate`` does (same defaults, same numbers):
    the ELBO, then ``repeats`` data sets generated from smoothing-posterior starts (after
    ``burn_in`` steps) compared with the recording. Continuous data: D_stsp (log space and the
    reference's float32), D_H and the mean-rate error, beside Gaussian noise with the recording's
    mean and covariance; ``hann_window=15`` is the paper's EEG processing of generated data (for
    a z-scored recording). Counts: Pearson r across neurons of mean rate, mean ISI and pairwise
    correlation, the mean-rate error, beside each neuron's counts shuffled over the bins, and the
    bits per spike of the smoothed rates. ``held_out_channels``: channels the posterior does not
    see, whose smoothed predictions are scored (``co_bps`` for counts, ``held_out_r2``
    otherwise; co-smoothing, with the bootstrap proposal). ``forward_steps``: the last steps of
    each trial predicted from the steps before them (``fp_bps`` / ``forward_r2``). ``conditions``:
    one label per trial, for ``psth_r2``. ``behaviour`` (trials, steps, dims): ``decoding_r2``,
    ridge regression from the smoothed latents (first 70 % of the trials fit, the rest scored)
    beside the same from the recorded channels."""
    data = as_dataset(observations, layout, inputs)
    _check_data(data, model)
    result = _core.evaluate(
        model,
        data,
        particles=particles,
        proposal=proposal,
        repeats=repeats,
        burn_in=burn_in,
        max_steps=max_steps,
        trajectories=trajectories,
        hann_window=hann_window,
        spectrum_smoothing=spectrum_smoothing,
        frequency_cutoff=frequency_cutoff,
        stsp_samples=stsp_samples,
        bin_seconds=bin_seconds,
        held_out_channels=[int(c) for c in held_out_channels],
        forward_steps=forward_steps,
        conditions=[] if conditions is None else [int(c) for c in conditions],
        behaviour=None if behaviour is None else np.asarray(behaviour, dtype=np.float64),
        seed=seed,
        device=_device(device),
        threads=threads,
        precision=precision,
    )
    return Evaluation(**result)


@dataclass
class Samples:
    """Sequences drawn from a model (``lrsmc sample`` / ``lrsmc simulate``)."""

    observations: np.ndarray  #: (trials, steps, channels)
    rates: np.ndarray  #: (trials, steps, channels), g(Bᵀz + b)
    latents: np.ndarray  #: (trials, steps, rank)


@_checked_arguments
def sample(
    model: _core.Model,
    trials: int = 10,
    steps: int = 100,
    *,
    burn_in: int = 0,
    inputs=None,
    initial_states=None,
    seed: int = 0,
    device: str = "auto",
    threads: int = 0,
    precision: str = "float32",
    progress: _progress.Progress = "auto",
) -> Samples:
    """Generates ``trials`` sequences of ``steps`` steps after ``burn_in`` dropped steps
    (``lrsmc sample``). ``inputs``, for models with inputs, is (trials, burn_in + steps, inputs).
    ``initial_states`` (trials, rank), e.g. posterior draws (:func:`smooth`'s trajectories at a
    step), start the sequences there (``lrsmc sample --init posterior``); otherwise they start
    from a draw of the initial state's prior.
    Observations of a Poisson read-out are counts, int64; every other array is float64.
    ``progress`` as in :func:`filter`: a draw of several trials that lasts longer than a few
    seconds runs in parts of whole trials with a progress bar (the same numbers as one call).
    """
    if burn_in < 0:
        raise _core.InvalidInputError(f"burn_in must be ≥ 0; got {burn_in}")
    progress = _progress.resolve(progress)
    input_array = None if inputs is None else _as_array(inputs, "inputs")
    state_array = None if initial_states is None else _as_array(initial_states, "initial_states")
    if state_array is not None and state_array.shape != (trials, model.config.rank):
        raise _core.InvalidInputError(
            f"initial_states have shape {state_array.shape}; expected ({trials}, {model.config.rank}) (trials, rank)"
        )
    options = dict(seed=seed, device=_device(device), threads=threads, precision=precision)

    def draw(first: int, count: int) -> dict:
        part = None if input_array is None else input_array[first : first + count]
        states = None if state_array is None else state_array[first : first + count]
        return _core.sample(
            model, count, steps + burn_in, inputs=part, initial_states=states, first_trial=first, **options
        )

    bar = _progress.bar(progress, trials, "lrsmc sample", "trial") if trials > 1 else None
    try:
        drawn = draw(0, trials) if bar is None or bar.disable else _in_parts(draw, trials, bar)
    finally:
        if bar is not None:
            bar.close()
    # Basic slicing: views of the engine's buffers, no copy.
    samples = Samples(**{name: values[:, burn_in:] for name, values in drawn.items()})
    if model.config.observation == "poisson":
        samples.observations = samples.observations.astype(np.int64)
    return samples


@_checked_arguments
def simulate(
    model: _core.Model, trials: int = 100, steps: int = 75, *, inputs=None, seed: int = 0, device: str = "auto"
) -> Samples:
    """Draws latents, rates and observations from a model file's model (``lrsmc simulate``)."""
    return sample(model, trials, steps, inputs=inputs, seed=seed, device=device)


# --- training -----------------------------------------------------------------------------------


#: The per-epoch arrays of a training history: EpochReport field and dtype.
_HISTORY_FIELDS = (
    ("epoch", np.int64),
    ("train_elbo", np.float64),
    ("held_out_elbo", np.float64),
    ("learning_rate", np.float64),
    ("elapsed_seconds", np.float64),
)


def _history(reports) -> Dict[str, np.ndarray]:
    return {
        name: np.array([getattr(report, name) for report in reports], dtype=dtype)
        for name, dtype in _HISTORY_FIELDS
    }


@dataclass
class TrainingOutcome:
    """The result of :func:`fit_model`."""

    model: _core.Model  #: the last good parameters
    history: Dict[str, np.ndarray] = field(repr=False)  #: per-epoch arrays (see LowRankRNN.history_)
    completed: bool  #: every epoch ran
    stop_reason: str  #: why training stopped early ('' when completed)


@_checked_arguments
def fit_model(
    model: _core.Model,
    observations,
    *,
    layout: Optional[str] = None,
    inputs=None,
    epochs: int = 1500,
    batch_size: int = 10,
    window: int = 50,
    windows_per_epoch: int = 500,
    learning_rate: float = 1e-3,
    learning_rate_end: float = 0.0,
    optimizer: str = "radam",
    gradient_clip: float = 0.0,
    particles: int = 10,
    proposal: str = "auto",
    resampling: str = "systematic",
    resample_threshold: float = 1.0,
    t_forward: int = 0,
    held_out: float = 0.0,
    eval_particles: int = 0,
    eval_every: int = 1,
    seed: int = 0,
    checkpoint: Optional[PathLike] = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    keep: str = "last",
    patience: int = 0,
    device: str = "auto",
    threads: int = 0,
    precision: str = "float32",
    callback: Optional[Callable[[_core.EpochReport], Optional[bool]]] = None,
) -> TrainingOutcome:
    """Trains ``model`` on the data as ``lrsmc fit --init`` does (same options and defaults).

    ``callback(report)`` runs after every epoch with an :class:`EpochReport`; returning
    ``False`` stops training cleanly (``completed`` is then False and ``stop_reason`` says
    why). Ctrl-C stops training after the current epoch; the KeyboardInterrupt — like any
    exception the callback raises — is then re-raised, with the model trained so far attached
    to it as ``error.training_outcome``. Checkpoints: as ``--checkpoint``, ``--checkpoint-every``
    and ``--resume``. With a held-out set, ``keep="best"`` returns the model of the best held-out
    ELBO instead of the last, and ``patience`` stops after that many held-out evaluations
    without improvement (``--keep``, ``--patience``). ``precision`` is the CPU's arithmetic, as
    in :func:`filter`.
    """
    data = as_dataset(observations, layout, inputs)
    _check_data(data, model)
    train, held = _core.split_held_out(data, held_out, window, seed)
    encoder_proposal = proposal == "encoder" or (
        proposal == "auto" and model.config.encoder is not None and not data.has_missing
    )
    for message in _core.training_warnings(
        train,
        epochs=epochs,
        batch_size=batch_size,
        windows_per_epoch=windows_per_epoch,
        learning_rate=learning_rate,
        encoder_proposal=encoder_proposal,
    ):
        warnings.warn(message, UserWarning, stacklevel=3)  # the caller of fit_model
    checkpoint_path = "" if checkpoint is None else os.fspath(checkpoint)
    resume_from = ""
    if resume:
        if not checkpoint_path or not os.path.exists(checkpoint_path):
            raise _core.InvalidInputError(
                f"{checkpoint_path or 'checkpoint'}: resume=True given but the checkpoint does not exist"
            )
        resume_from = checkpoint_path
    result, error = _core.fit(
        model,
        train,
        held,
        epochs=epochs,
        batch_size=batch_size,
        window=window,
        windows_per_epoch=windows_per_epoch,
        learning_rate=learning_rate,
        learning_rate_end=learning_rate_end,
        optimizer=optimizer,
        gradient_clip=gradient_clip,
        particles=particles,
        proposal=proposal,
        resampling=resampling,
        resample_threshold=resample_threshold,
        t_forward=t_forward,
        eval_particles=eval_particles,
        eval_every=eval_every,
        held_out_fraction=held_out,
        seed=seed,
        checkpoint_path=checkpoint_path,
        checkpoint_every=checkpoint_every,
        keep=keep,
        patience=patience,
        resume_from=resume_from,
        device=_device(device),
        threads=threads,
        precision=precision,
        callback=callback,
    )
    outcome = TrainingOutcome(result.model, _history(result.history), result.completed, result.stop_reason)
    if error is not None:
        epoch = len(result.history)
        kind = "interrupted (KeyboardInterrupt)" if isinstance(error, KeyboardInterrupt) else (
            f"stopped by {type(error).__name__} in the callback"
        )
        outcome.stop_reason = f"{kind} after epoch {epoch}"
        error.training_outcome = outcome
        raise error
    return outcome


# --- model files --------------------------------------------------------------------------------


def load_model(path: PathLike) -> _core.Model:
    """Reads a model file (.npz, the command line's format; checkpoints load too)."""
    return _core.Model.load(os.fspath(path))


def save_model(model: _core.Model, path: PathLike) -> None:
    """Writes a model file (.npz) atomically: a temporary file, then a rename."""
    model.save(os.fspath(path))


# The engine reads and writes model files by path only, so the bytes pass through a temporary
# folder (removed at once).


def _model_file_bytes(model: _core.Model) -> bytes:
    """The bytes of the model file that :func:`save_model` writes for `model`."""
    with tempfile.TemporaryDirectory(prefix="lrsmc-") as folder:
        path = os.path.join(folder, "model.npz")
        model.save(path)
        with open(path, "rb") as file:
            return file.read()


def _model_from_file_bytes(contents: bytes) -> _core.Model:
    """The model of a model file's bytes, read as :func:`load_model` reads the file."""
    with tempfile.TemporaryDirectory(prefix="lrsmc-") as folder:
        path = os.path.join(folder, "model.npz")
        with open(path, "wb") as file:
            file.write(contents)
        return _core.Model.load(path)


def _reduce_model(model: _core.Model):
    return _model_from_file_bytes, (_model_file_bytes(model),)


# A Model pickles as its model file's bytes (float64 parameters and the JSON configuration, so
# a round trip is exact), and with it an estimator: joblib, multiprocessing and Ray workers use
# pickle, which consults copyreg for extension types such as Model.
copyreg.pickle(_core.Model, _reduce_model)


# --- dynamics -----------------------------------------------------------------------------------


def _constant_current(model: _core.Model, input) -> np.ndarray:
    """W_u·u for a constant input u (zeros without input), as ``lrsmc fixed-points --input``."""
    config = model.config
    current = np.zeros(config.num_hidden)
    if config.num_inputs == 0:
        if input is not None and np.size(input) > 0:
            raise _core.InvalidInputError(
                f"input has {np.size(input)} values, but the model has no inputs"
            )
        return current
    if input is None:
        return current
    u = np.asarray(input, dtype=np.float64).reshape(-1)
    if u.size != config.num_inputs:
        raise _core.InvalidInputError(
            f"input has {u.size} values; expected {config.num_inputs} (the model's input dimension)"
        )
    return model.get("w_u") @ u


def _phi(nonlinearity: str, currents: np.ndarray, h: np.ndarray) -> np.ndarray:
    """φ(X; h) of method.md §1.2."""
    if nonlinearity == "relu":
        return np.maximum(currents - h, 0.0)
    if nonlinearity == "clipped_relu":
        return np.maximum(currents + h, 0.0) - np.maximum(currents, 0.0)
    if nonlinearity == "tanh":
        return np.tanh(currents - h)
    return currents - h  # identity


def latent_map(model: _core.Model, z, input=None) -> np.ndarray:
    """The deterministic latent map F(z) = a z + n φ(m z + W_u u; h) (no noise), for z of shape
    (..., rank). Its fixed points are what :func:`fixed_points` finds."""
    z = np.asarray(z, dtype=np.float64)
    m, n, h = model.get("m"), model.get("n"), model.get("h")
    currents = z @ m.T + _constant_current(model, input)
    return model.decay * z + _phi(model.config.nonlinearity, currents, h) @ n.T


@_checked_arguments
def find_fixed_points(
    m,
    n,
    h,
    decay: float,
    nonlinearity: str = "relu",
    constant_current=None,
    *,
    method: str = "exact",
    num_starts: int = 100,
    seed: int = 0,
    tolerance: float = 1e-9,
) -> _core.FixedPointResult:
    """Fixed points of F(z) = decay·z + n φ(m z + c; h) for m (N, R), n (R, N), h (N).

    ``method``: ``exact`` (relu, clipped_relu, identity: every fixed point, by the polynomial
    hyperplane-arrangement algorithm), ``brute_force`` (every activation pattern; small N) or
    ``numerical`` (damped Newton from ``num_starts`` seeded starts; any nonlinearity, tanh
    included, with no guarantee of completeness).
    """
    return _core.find_fixed_points(
        _as_array(m, "m"),
        _as_array(n, "n"),
        _as_array(h, "h"),
        float(decay),
        nonlinearity,
        None if constant_current is None else _as_array(constant_current, "constant_current"),
        method=method,
        num_starts=num_starts,
        seed=seed,
        tolerance=tolerance,
    )


@_checked_arguments
def fixed_points(
    model: _core.Model,
    input=None,
    *,
    method: str = "auto",
    num_starts: int = 100,
    seed: int = 0,
) -> List[_core.FixedPoint]:
    """Fixed points of a model's latent map with its input held at ``input`` (``lrsmc
    fixed-points``). ``method='auto'`` is exact for relu, clipped_relu and identity and the
    numerical search (``num_starts`` starts) for tanh; each point has ``z``, ``stability``,
    ``eigenvalues`` and ``pattern``."""
    if method == "auto":
        method = "numerical" if model.config.nonlinearity == "tanh" else "exact"
    return find_fixed_points(
        model.get("m"),
        model.get("n"),
        model.get("h"),
        model.decay,
        model.config.nonlinearity,
        _constant_current(model, input),
        method=method,
        num_starts=num_starts,
        seed=seed,
    ).fixed_points
