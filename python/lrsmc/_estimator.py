"""The estimator interface: ``LowRankRNN(rank=3).fit(X)``, in the manner of scikit-learn
(hyperparameters in the constructor, fitted state in attributes ending in ``_``)."""

from __future__ import annotations

import inspect
import math
import sys
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from . import _api, _core


class NotFittedError(ValueError, AttributeError):
    """The estimator has no model yet: call ``fit`` or ``LowRankRNN.load`` first."""


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    total = round(seconds)
    if total >= 3600:
        return f"{total // 3600}h {total // 60 % 60:02d}m {total % 60:02d}s"
    if total >= 60:
        return f"{total // 60}m {total % 60:02d}s"
    return f"{total}s"


def _progress_line(report: _core.EpochReport) -> str:
    """The command line's progress line."""
    held_out = f" | held-out {report.held_out_elbo:.4f}" if math.isfinite(report.held_out_elbo) else ""
    return (
        f"epoch {report.epoch}/{report.epochs} | elbo {report.train_elbo:.4f}{held_out} | "
        f"lr {report.learning_rate:.2e} | {_format_duration(report.elapsed_seconds)} elapsed | "
        f"{_format_duration(report.remaining_seconds)} left"
    )


class LowRankRNN:
    """A stochastic low-rank RNN fitted by variational sequential Monte Carlo.

    The latent state z_t (``rank`` dimensions) follows
    z_t = a z_{t-1} + n φ(m z_{t-1} + W_u u_{t-1} − h) + ε_t with ``num_hidden`` units, and the
    recorded channels are read out as x_t ~ p(x | Bᵀ z_t + b). Every parameter has the meaning and
    default of the command line's ``lrsmc fit`` option of the same name (README, "Commands and
    options"); ``held_out`` is ``--held-out``, ``gradient_clip`` is ``--clip``.

    Parameters
    ----------
    rank, num_hidden : latent dimension R and number of units N.
    nonlinearity : ``relu``, ``clipped_relu``, ``tanh`` or ``identity``.
    observation : ``gaussian`` or ``poisson``; ``link`` is ``identity``, ``exp``, ``softplus`` or
        ``relu``, and ``auto`` means identity for Gaussian and softplus for Poisson read-outs.
    particles, proposal, resampling, resample_threshold : the training particle filter.
    epochs, batch_size, window, windows_per_epoch, learning_rate, learning_rate_end, optimizer,
    gradient_clip, held_out, eval_particles, eval_every, seed : training (RAdam or Adam with an
        exponential learning-rate decay; a long recording is trained on random windows).
    keep, patience : with ``held_out`` > 0, ``keep="best"`` keeps the model of the best held-out
        ELBO instead of the last; ``patience`` stops after that many held-out evaluations
        without improvement (0: never), as ``--keep`` and ``--patience``.
    device : ``auto``, ``cpu`` or ``cuda``. ``auto`` trains and filters on a GPU when one is
        present (as the command line) and on the CPU otherwise; ``cuda`` without a usable GPU
        raises :class:`CudaError`.
    threads : CPU threads (0: all cores).
    precision : the CPU's arithmetic: ``float32`` (16 particles per SIMD register, float64
        weight and gradient sums; the fast path), ``float64`` (the reference) or
        ``float32-device`` (the CUDA kernels' order of operations), as ``--precision``.
    warm_start : when True, ``fit`` continues from the fitted model instead of a fresh one.
    verbose : print the command line's progress line to stderr (about 50 lines per run).

    Attributes (after ``fit``)
    --------------------------
    model_ : :class:`Model`, the fitted parameters.
    history_ : dict of per-epoch arrays ``epoch``, ``train_elbo`` (the ELBO curve, per time step),
        ``held_out_elbo`` (NaN where not evaluated), ``learning_rate``, ``elapsed_seconds``.
    completed_ : whether every epoch ran.
    stop_reason_ : why training stopped early ('' when completed).
    """

    def __init__(
        self,
        rank: int = 3,
        num_hidden: int = 512,
        *,
        nonlinearity: str = "clipped_relu",
        observation: str = "gaussian",
        link: str = "auto",
        transition_noise: str = "full",
        initial_noise: str = "full",
        initial_state: str = "trainable",
        init_decay: float = 0.9,
        init_transition_std: float = 0.1,
        init_initial_std: float = 1.0,
        init_observation_std: float = 0.1,
        particles: int = 10,
        proposal: str = "auto",
        resampling: str = "systematic",
        resample_threshold: float = 1.0,
        epochs: int = 1500,
        batch_size: int = 10,
        window: int = 50,
        windows_per_epoch: int = 500,
        learning_rate: float = 1e-3,
        learning_rate_end: float = 1e-6,
        optimizer: str = "radam",
        gradient_clip: float = 0.0,
        held_out: float = 0.0,
        eval_particles: int = 0,
        eval_every: int = 1,
        keep: str = "last",
        patience: int = 0,
        seed: int = 0,
        device: str = "auto",
        threads: int = 0,
        precision: str = "float32",
        warm_start: bool = False,
        verbose: bool = False,
    ):
        self.rank = rank
        self.num_hidden = num_hidden
        self.nonlinearity = nonlinearity
        self.observation = observation
        self.link = link
        self.transition_noise = transition_noise
        self.initial_noise = initial_noise
        self.initial_state = initial_state
        self.init_decay = init_decay
        self.init_transition_std = init_transition_std
        self.init_initial_std = init_initial_std
        self.init_observation_std = init_observation_std
        self.particles = particles
        self.proposal = proposal
        self.resampling = resampling
        self.resample_threshold = resample_threshold
        self.epochs = epochs
        self.batch_size = batch_size
        self.window = window
        self.windows_per_epoch = windows_per_epoch
        self.learning_rate = learning_rate
        self.learning_rate_end = learning_rate_end
        self.optimizer = optimizer
        self.gradient_clip = gradient_clip
        self.held_out = held_out
        self.eval_particles = eval_particles
        self.eval_every = eval_every
        self.keep = keep
        self.patience = patience
        self.seed = seed
        self.device = device
        self.threads = threads
        self.precision = precision
        self.warm_start = warm_start
        self.verbose = verbose

    # --- scikit-learn conventions ---------------------------------------------------------------

    @classmethod
    def _defaults(cls) -> Dict[str, Any]:
        """The constructor's parameters and their defaults."""
        parameters = inspect.signature(cls.__init__).parameters
        return {name: parameter.default for name, parameter in parameters.items() if name != "self"}

    @classmethod
    def _parameter_names(cls) -> List[str]:
        return list(cls._defaults())

    @classmethod
    def _fit_parameter_names(cls) -> List[str]:
        """The constructor parameters that :func:`lrsmc._api.fit_model` takes under the same name
        (the training options; the architecture goes into the initial model)."""
        own = cls._defaults()
        return [name for name in inspect.signature(_api.fit_model).parameters if name in own]

    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The constructor's parameters (scikit-learn's convention)."""
        return {name: getattr(self, name) for name in self._parameter_names()}

    def set_params(self, **params: Any) -> "LowRankRNN":
        """Sets constructor parameters; unknown names raise ValueError."""
        valid = set(self._parameter_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"LowRankRNN has no parameter {name!r}; expected one of {sorted(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = self._defaults()
        changed = [f"{name}={value!r}" for name, value in self.get_params().items() if defaults.get(name) != value]
        return f"LowRankRNN({', '.join(changed)})"

    # --- fitting --------------------------------------------------------------------------------

    def model_config(self, num_channels: int, num_inputs: int = 0) -> _core.ModelConfig:
        """The :class:`ModelConfig` this estimator fits to data of ``num_channels`` channels."""
        link = self.link
        if link == "auto":
            link = "softplus" if self.observation == "poisson" else "identity"
        return _core.ModelConfig(
            rank=self.rank,
            num_hidden=self.num_hidden,
            num_channels=num_channels,
            num_inputs=num_inputs,
            nonlinearity=self.nonlinearity,
            transition_noise=self.transition_noise,
            initial_noise=self.initial_noise,
            observation=self.observation,
            link=link,
            initial_state=self.initial_state,
            init_decay=self.init_decay,
            init_transition_std=self.init_transition_std,
            init_initial_std=self.init_initial_std,
            init_observation_std=self.init_observation_std,
        )

    def fit(
        self,
        X,
        y=None,
        *,
        inputs=None,
        layout: Optional[str] = None,
        callback: Optional[Callable[[_core.EpochReport], Optional[bool]]] = None,
        checkpoint=None,
        checkpoint_every: int = 0,
        resume: bool = False,
    ) -> "LowRankRNN":
        """Fits the model to ``X`` and returns ``self``.

        ``X`` is (trials, time, channels), or one long recording (time, channels), or any layout
        of :data:`lrsmc._api.LAYOUTS` named by ``layout``; ``inputs`` (same layout) enter through
        W_u. ``y`` is ignored (scikit-learn pipelines pass it).

        ``callback(report)`` runs after every epoch with an :class:`EpochReport`; returning
        ``False`` stops training cleanly: ``completed_`` is then False and ``stop_reason_`` says
        when. **Ctrl-C** (KeyboardInterrupt) stops training after the current epoch: the model
        trained so far is kept in ``model_``/``history_`` (``stop_reason_`` says "interrupted"),
        and the KeyboardInterrupt is then re-raised, so a script stops as usual while a notebook
        keeps the model. An exception raised by the callback is handled the same way.

        The same data, seed and options give the same parameters as ``lrsmc fit`` (bit for bit).
        """
        del y
        _api._check_integer(self.seed, "seed")
        data = _api.as_dataset(X, layout, inputs)
        if self.warm_start and hasattr(self, "model_"):
            model = self.model_
        else:
            model = _core.Model.initialise(self.model_config(data.num_channels, data.num_inputs), self.seed)
        if self.verbose:  # the command line's header line
            print(f"lrsmc fit: {data.describe()}", file=sys.stderr, flush=True)
        try:
            outcome = _api.fit_model(
                model,
                data,
                checkpoint=checkpoint,
                checkpoint_every=checkpoint_every,
                resume=resume,
                callback=self._progress(callback),
                **{name: getattr(self, name) for name in self._fit_parameter_names()},
            )
        except BaseException as error:
            outcome = getattr(error, "training_outcome", None)
            if outcome is not None:
                self._store(outcome)
            raise
        self._store(outcome)
        return self

    def _progress(self, callback):
        if not self.verbose:
            return callback

        def report_and_call(report: _core.EpochReport):
            every = max(1, report.epochs // 50)
            if report.epoch == 1 or report.epoch == report.epochs or report.epoch % every == 0:
                print(_progress_line(report), file=sys.stderr, flush=True)
            return None if callback is None else callback(report)

        return report_and_call

    def _store(self, outcome: _api.TrainingOutcome) -> None:
        self.model_ = outcome.model
        self.history_ = outcome.history
        self.completed_ = outcome.completed
        self.stop_reason_ = outcome.stop_reason

    def _fitted_model(self) -> _core.Model:
        model = getattr(self, "model_", None)
        if model is None:
            raise NotFittedError("this LowRankRNN has no model yet; call fit(X) or LowRankRNN.load(path) first")
        return model

    # --- inference ------------------------------------------------------------------------------

    def filter(
        self,
        X,
        *,
        inputs=None,
        layout: Optional[str] = None,
        particles: int = 1000,
        seed: int = 0,
        return_particles: bool = False,
    ) -> _api.FilterResult:
        """Filtered latents (trials, steps, rank) and the per-trial ELBO per time step of ``X``
        (``lrsmc filter``), with the estimator's proposal, resampling and device."""
        return _api.filter(
            self._fitted_model(),
            X,
            layout=layout,
            inputs=inputs,
            particles=particles,
            proposal=self.proposal,
            resampling=self.resampling,
            resample_threshold=self.resample_threshold,
            seed=seed,
            device=self.device,
            threads=self.threads,
            precision=self.precision,
            return_particles=return_particles,
        )

    def transform(self, X, *, inputs=None, layout: Optional[str] = None) -> np.ndarray:
        """The filtered latents of ``X`` (trials, steps, rank)."""
        return self.filter(X, inputs=inputs, layout=layout).latents

    def score(self, X, y=None, *, inputs=None, layout: Optional[str] = None, particles: int = 1000) -> float:
        """Mean ELBO per time step of ``X`` (higher is better)."""
        del y
        return self.filter(X, inputs=inputs, layout=layout, particles=particles).elbo

    def sample(
        self, trials: int = 10, steps: int = 100, *, burn_in: int = 0, inputs=None, seed: int = 0
    ) -> _api.Samples:
        """Generates observations, rates and latents (trials, steps, ·) from the fitted model."""
        return _api.sample(
            self._fitted_model(),
            trials,
            steps,
            burn_in=burn_in,
            inputs=inputs,
            seed=seed,
            device=self.device,
            threads=self.threads,
            precision=self.precision,
        )

    def fixed_points(self, input=None, *, method: str = "auto", num_starts: int = 100, seed: int = 0):
        """Fixed points of the fitted latent map (exact for relu / clipped_relu / identity, a
        numerical search for tanh); see :func:`lrsmc.fixed_points`."""
        return _api.fixed_points(self._fitted_model(), input, method=method, num_starts=num_starts, seed=seed)

    # --- files ----------------------------------------------------------------------------------

    def save(self, path) -> None:
        """Writes the fitted model as a model file (.npz), readable by ``lrsmc`` and numpy."""
        _api.save_model(self._fitted_model(), path)

    @classmethod
    def load(cls, path, **params: Any) -> "LowRankRNN":
        """An estimator holding the model of a model file (or checkpoint). Its architecture
        parameters come from the file; ``params`` set the others (device, particles, ...)."""
        model = _api.load_model(path)
        config = model.config
        estimator = cls(
            rank=config.rank,
            num_hidden=config.num_hidden,
            nonlinearity=config.nonlinearity,
            observation=config.observation,
            link=config.link,
            transition_noise=config.transition_noise,
            initial_noise=config.initial_noise,
            initial_state=config.initial_state,
        ).set_params(**params)
        estimator.model_ = model
        return estimator
