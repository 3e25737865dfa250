"""The estimator interface: ``LowRankRNN(rank=3).fit(X)``, in the manner of scikit-learn
(hyperparameters in the constructor, fitted state in attributes ending in ``_``). It works with
scikit-learn's tools (clone, pipelines, cross_val_score, GridSearchCV) without depending on
scikit-learn, and pickles (its model as the model file's bytes)."""

from __future__ import annotations

import inspect
import math
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from . import _api, _core, _progress


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
    recorded channels are read out as x_t ~ p(x | Bᵀ z_t + b). Every parameter has the meaning of
    the command line's ``lrsmc fit`` option of the same name (README, "Commands and options");
    ``held_out`` is ``--held-out``, ``gradient_clip`` is ``--clip``. The architecture and training
    parameters default to None: the ``preset``'s value, or without one the command line's
    default (:attr:`DEFAULTS`; :meth:`effective_params` shows what a fit uses).

    Parameters
    ----------
    rank, num_hidden : latent dimension R and number of units N.
    nonlinearity : ``relu``, ``clipped_relu``, ``tanh`` or ``identity``.
    observation : ``gaussian`` or ``poisson``; ``link`` is ``identity``, ``exp``, ``softplus`` or
        ``relu``, and ``auto`` means identity for Gaussian and softplus for Poisson read-outs.
    readout_from : what the read-out reads, as ``--readout-from``: ``z`` (η = Bᵀz + b),
        ``z_and_v`` (the inputs too, η = Bᵀ[v; z] + b), or each unit one to one with a gain and a
        bias: ``currents`` (η_i = g_i X_i + b_i) or ``rates`` (η_i = g_i φ(X_i) + b_i), where
        ``num_hidden`` left at None becomes the number of channels.
    particles, proposal, resampling, resample_threshold, t_forward : the training particle filter
        (``t_forward``: the last steps of each trial are a forecast, as ``--t-forward``).
        ``proposal="encoder"`` trains a convolutional encoder with the model whose factor
        per step is multiplied with the transition prior (the paper's proposal for spike
        counts); ``"auto"`` uses the model's encoder when it has one, trains one for Poisson
        data at a learning rate of at most 2e-3 (above it the encoder can blow up), and
        otherwise uses the optimal proposal for a linear-Gaussian read-out, else the bootstrap
        proposal.
    encoder_kernels, encoder_channels, encoder_activation, encoder_padding, encoder_padding_mode,
    encoder_init_scale, encoder_constant_variance : the encoder of ``proposal="encoder"``, as
        ``--encoder-*``: kernel sizes (the last one the heads'), the channels of the convolutions
        before the heads (default 64 each), ``gelu`` or ``leaky_relu``, ``causal``,
        ``acausal`` or ``windowed`` padding with ``zeros``, ``reflect``, ``replicate`` or
        ``circular`` values, the initial standard deviation, and one constant variance per
        latent dimension instead of the log-variance head.
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
    preset : ``None``, ``"eeg"``, ``"spikes"`` or ``"small"``, as ``lrsmc fit --preset``: a
        recipe of architecture and training options (:func:`lrsmc.presets` lists what each sets).
        A parameter left at None takes the preset's value (without a preset, the command
        line's default, :attr:`DEFAULTS`); a parameter given explicitly wins.
        ``learning_rate_end=0`` (default) keeps the paper's decay per optimizer step over this
        run's steps (``--lr-end 0``), so a short run decays less.
    verbose : ``"auto"`` (default): a progress bar (tqdm; text in a terminal, a widget in a
        notebook) for a ``fit``, ``filter``, ``transform`` or ``score`` that lasts longer than a
        few seconds, and none when stderr is not a terminal (a log, a pipe). ``True``: ``fit``
        prints the command line's progress line to stderr (about 50 lines per run) and filtering
        shows the bar wherever stderr goes. ``False``: no output.

    Attributes (after ``fit``)
    --------------------------
    model_ : :class:`Model`, the fitted parameters.
    history_ : dict of per-epoch arrays ``epoch``, ``train_elbo`` (the ELBO curve, per time step),
        ``held_out_elbo`` (NaN where not evaluated), ``learning_rate``, ``elapsed_seconds``.
    completed_ : whether every epoch ran.
    stop_reason_ : why training stopped early ('' when completed).
    n_features_in_ : the number of channels (scikit-learn's name).

    scikit-learn
    ------------
    A sample is a time step and a feature a channel: a 2-D ``X`` is one (time, channels)
    recording, and a 3-D ``X`` (trials, time, channels) is split by trials in cross-validation.
    ``score`` is the held-out ELBO per time step (higher is better), which ``GridSearchCV`` and
    ``cross_val_score`` maximise; ``transform`` gives the filtered latents. Pickling (joblib, Ray,
    multiprocessing) carries the fitted model as its model file's bytes, exactly.
    """

    #: What a parameter left at None means without a preset: the command line's default.
    DEFAULTS: Dict[str, Any] = dict(
        rank=3,
        num_hidden=512,
        nonlinearity="clipped_relu",
        observation="gaussian",
        link="auto",
        transition_noise="full",
        initial_noise="full",
        initial_state="trainable",
        init_decay=0.9,
        init_transition_std=0.1,
        init_initial_std=1.0,
        init_observation_std=0.1,
        particles=10,
        epochs=1500,
        batch_size=10,
        window=50,
        windows_per_epoch=500,
        learning_rate=1e-3,
        learning_rate_end=0.0,
        optimizer="radam",
        gradient_clip=0.0,
        held_out=0.0,
        eval_particles=0,
        eval_every=1,
        keep="last",
        patience=0,
    )

    def __init__(
        self,
        rank: Optional[int] = None,
        num_hidden: Optional[int] = None,
        *,
        nonlinearity: Optional[str] = None,
        observation: Optional[str] = None,
        link: Optional[str] = None,
        readout_from: str = "z",
        transition_noise: Optional[str] = None,
        initial_noise: Optional[str] = None,
        initial_state: Optional[str] = None,
        init_decay: Optional[float] = None,
        init_transition_std: Optional[float] = None,
        init_initial_std: Optional[float] = None,
        init_observation_std: Optional[float] = None,
        particles: Optional[int] = None,
        proposal: str = "auto",
        encoder_kernels: Sequence[int] = (21, 11, 1),
        encoder_channels: Optional[Sequence[int]] = None,
        encoder_activation: str = "gelu",
        encoder_padding: str = "causal",
        encoder_padding_mode: str = "zeros",
        encoder_init_scale: float = 0.1,
        encoder_constant_variance: bool = False,
        resampling: str = "systematic",
        resample_threshold: float = 1.0,
        t_forward: int = 0,
        epochs: Optional[int] = None,
        batch_size: Optional[int] = None,
        window: Optional[int] = None,
        windows_per_epoch: Optional[int] = None,
        learning_rate: Optional[float] = None,
        learning_rate_end: Optional[float] = None,
        optimizer: Optional[str] = None,
        gradient_clip: Optional[float] = None,
        held_out: Optional[float] = None,
        eval_particles: Optional[int] = None,
        eval_every: Optional[int] = None,
        keep: Optional[str] = None,
        patience: Optional[int] = None,
        seed: int = 0,
        device: str = "auto",
        threads: int = 0,
        precision: str = "float32",
        warm_start: bool = False,
        verbose: Union[bool, str] = "auto",
        preset: Optional[str] = None,
    ):
        self.rank = rank
        self.num_hidden = num_hidden
        self.nonlinearity = nonlinearity
        self.observation = observation
        self.link = link
        self.readout_from = readout_from
        self.transition_noise = transition_noise
        self.initial_noise = initial_noise
        self.initial_state = initial_state
        self.init_decay = init_decay
        self.init_transition_std = init_transition_std
        self.init_initial_std = init_initial_std
        self.init_observation_std = init_observation_std
        self.particles = particles
        self.proposal = proposal
        self.encoder_kernels = encoder_kernels
        self.encoder_channels = encoder_channels
        self.encoder_activation = encoder_activation
        self.encoder_padding = encoder_padding
        self.encoder_padding_mode = encoder_padding_mode
        self.encoder_init_scale = encoder_init_scale
        self.encoder_constant_variance = encoder_constant_variance
        self.resampling = resampling
        self.resample_threshold = resample_threshold
        self.t_forward = t_forward
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
        self.preset = preset

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

    def __sklearn_tags__(self):
        """What scikit-learn's tools and checks need to know: an unsupervised transformer (no
        ``y``) of dense 2-D (time, channels) or 3-D (trials, time, channels) arrays. Called by
        scikit-learn only, so it is imported here."""
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            transformer_tags=TransformerTags(preserves_dtype=["float64"]),
            input_tags=InputTags(two_d_array=True, three_d_array=True),
        )

    def __sklearn_is_fitted__(self) -> bool:
        return getattr(self, "model_", None) is not None

    # --- fitting --------------------------------------------------------------------------------

    #: The command line's option names that are not the parameter's name with "-" as "_".
    _OPTION_NAMES = {"hidden": "num_hidden", "lr": "learning_rate", "lr-end": "learning_rate_end",
                     "clip": "gradient_clip"}

    def effective_params(self) -> Dict[str, Any]:
        """The parameters a fit uses: :meth:`get_params`, with each parameter left at None taking
        the preset's value, or without one :attr:`DEFAULTS` (the command line's defaults)."""
        params = self.get_params()
        if self.preset is not None:
            table = {preset["name"]: preset for preset in _core.presets()}
            if self.preset not in table:
                raise _core.InvalidInputError(
                    f"preset: unknown preset {self.preset!r}; expected one of {', '.join(table)} or None"
                )
            for option, value in table[self.preset]["settings"]:
                name = self._OPTION_NAMES.get(option, option.replace("-", "_"))
                if params[name] is None:
                    params[name] = type(self.DEFAULTS[name])(value)
        for name, default in self.DEFAULTS.items():
            if params[name] is None:
                params[name] = default
        return params

    def model_config(self, num_channels: int, num_inputs: int = 0, missing: bool = False) -> _core.ModelConfig:
        """The :class:`ModelConfig` this estimator fits to data of ``num_channels`` channels
        (``missing``: the data has missing values, so "auto" adds no encoder)."""
        params = self.effective_params()
        link = params["link"]
        if link == "auto":
            link = "softplus" if params["observation"] == "poisson" else "identity"
        num_hidden = params["num_hidden"]
        if self.readout_from in ("currents", "rates") and self.num_hidden is None:
            num_hidden = num_channels  # one to one: a unit per channel
        return _core.ModelConfig(
            rank=params["rank"],
            num_hidden=num_hidden,
            num_channels=num_channels,
            num_inputs=num_inputs,
            nonlinearity=params["nonlinearity"],
            transition_noise=params["transition_noise"],
            initial_noise=params["initial_noise"],
            observation=params["observation"],
            link=link,
            readout_from=self.readout_from,
            initial_state=params["initial_state"],
            init_decay=params["init_decay"],
            init_transition_std=params["init_transition_std"],
            init_initial_std=params["init_initial_std"],
            init_observation_std=params["init_observation_std"],
            **self._encoder_config(params, missing),
        )

    def _encoder_config(self, params: Dict[str, Any], missing: bool = False) -> Dict[str, Any]:
        """The ModelConfig keywords of the encoder: with ``proposal="encoder"``, or ``"auto"`` for
        Poisson data without missing values at a learning rate the encoder is stable at (as
        ``lrsmc fit``); none otherwise."""
        auto = self.proposal == "auto" and not missing and _core.auto_trains_encoder(
            params["observation"], params["learning_rate"]
        )
        if self.proposal != "encoder" and not auto:
            return {}
        channels = self.encoder_channels
        return dict(
            encoder_kernels=[int(k) for k in self.encoder_kernels],
            encoder_channels=None if channels is None else [int(c) for c in channels],
            encoder_activation=self.encoder_activation,
            encoder_padding=self.encoder_padding,
            encoder_padding_mode=self.encoder_padding_mode,
            encoder_init_scale=float(self.encoder_init_scale),
            encoder_constant_variance=bool(self.encoder_constant_variance),
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
        params = self.effective_params()
        _api._check_integer(self.seed, "seed")
        _api._check_integer(params["epochs"], "epochs")
        _api._check_integer(params["window"], "window")
        verbose = _progress.resolve(self.verbose, "verbose")
        data = _api.as_dataset(X, layout, inputs)
        self._check_recording_length(data, params["window"])
        if self.warm_start and hasattr(self, "model_"):
            model = self.model_
        else:
            model = _core.Model.initialise(
                self.model_config(data.num_channels, data.num_inputs, data.has_missing), self.seed
            )
        if verbose is True:  # the command line's header line
            print(f"lrsmc fit: {data.describe()}", file=sys.stderr, flush=True)
        bar = None
        if verbose == "auto":
            bar = _progress.bar(verbose, params["epochs"], "lrsmc fit", "epoch")
        try:
            outcome = _api.fit_model(
                model,
                data,
                checkpoint=checkpoint,
                checkpoint_every=checkpoint_every,
                resume=resume,
                callback=self._epoch_callback(callback, verbose, bar),
                **{name: params[name] for name in self._fit_parameter_names()},
            )
        except BaseException as error:
            outcome = getattr(error, "training_outcome", None)
            if outcome is not None:
                self._store(outcome, data.num_channels)
            raise
        finally:
            if bar is not None:
                bar.close()
        self._store(outcome, data.num_channels)
        return self

    def fit_transform(
        self, X, y=None, *, inputs=None, layout: Optional[str] = None, **fit_options
    ) -> np.ndarray:
        """``fit(X, ...)`` then ``transform(X)``: the filtered latents of the training data."""
        self.fit(X, y, inputs=inputs, layout=layout, **fit_options)
        return self.transform(X, inputs=inputs, layout=layout)

    @staticmethod
    def _check_recording_length(data: _core.Dataset, window: int) -> None:
        """A recording shorter than one training window is refused before training, in words
        that count time steps as scikit-learn counts samples."""
        if data.continuous and data.num_steps < window:
            raise _core.InvalidInputError(
                f"{data.source}: the recording has {data.num_steps} sample(s) (time steps), fewer "
                f"than one training window; got window={window}, expected at most "
                f"{data.num_steps} (or a longer recording)"
            )

    @staticmethod
    def _epoch_callback(callback, verbose, bar):
        """The per-epoch callback: the command line's progress line (verbose True) or the progress
        bar (verbose "auto"), then the user's callback."""
        if verbose is False:
            return callback

        def report_and_call(report: _core.EpochReport):
            if bar is not None:
                held_out = report.held_out_elbo
                held_out = f", held-out {held_out:.4f}" if math.isfinite(held_out) else ""
                bar.set_postfix_str(f"elbo {report.train_elbo:.4f}{held_out}", refresh=False)
                bar.update(report.epoch - bar.n)
            else:
                every = max(1, report.epochs // 50)
                if report.epoch == 1 or report.epoch == report.epochs or report.epoch % every == 0:
                    print(_progress_line(report), file=sys.stderr, flush=True)
            return None if callback is None else callback(report)

        return report_and_call

    def _store(self, outcome: _api.TrainingOutcome, num_channels: int) -> None:
        self.model_ = outcome.model
        self.history_ = outcome.history
        self.completed_ = outcome.completed
        self.stop_reason_ = outcome.stop_reason
        self.n_features_in_ = num_channels

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
        (``lrsmc filter``), with the estimator's proposal, resampling and device. A call over
        many trials that lasts more than a few seconds shows a progress bar (see ``verbose``).

        Raises InvalidInputError (a ValueError) when ``X`` has another number of channels than
        the model ("X has 3 features, but LowRankRNN is expecting 4 features as input; ...")."""
        model = self._fitted_model()
        data = _api.as_dataset(X, layout, inputs)
        self._check_features(data, model)
        return _api.filter(
            model,
            data,
            particles=particles,
            seed=seed,
            **self._filter_settings(),
            return_particles=return_particles,
            progress=_progress.resolve(self.verbose, "verbose"),
        )

    def smooth(
        self,
        X,
        *,
        inputs=None,
        layout: Optional[str] = None,
        particles: int = 1000,
        trajectories: int = 100,
        seed: int = 0,
    ) -> _api.SmoothResult:
        """Smoothed latents (trials, steps, rank) of ``X`` and ``trajectories`` backward-simulation
        draws per trial (``lrsmc filter --smooth``), with the estimator's proposal, resampling and
        device."""
        model = self._fitted_model()
        data = _api.as_dataset(X, layout, inputs)
        self._check_features(data, model)
        return _api.smooth(
            model, data, particles=particles, trajectories=trajectories, seed=seed, **self._filter_settings()
        )

    def evaluate(
        self,
        X,
        *,
        inputs=None,
        layout: Optional[str] = None,
        particles: int = 1000,
        repeats: int = 1,
        burn_in: int = 0,
        hann_window: int = 0,
        bin_seconds: float = 1.0,
        seed: int = 0,
        **options,
    ) -> _api.Evaluation:
        """Scores the fitted model on ``X`` (``lrsmc evaluate``; see :func:`lrsmc.evaluate` for the
        measures and the further ``options``), with the estimator's proposal and device."""
        model = self._fitted_model()
        data = _api.as_dataset(X, layout, inputs)
        self._check_features(data, model)
        return _api.evaluate(
            model,
            data,
            particles=particles,
            proposal=self.proposal,
            repeats=repeats,
            burn_in=burn_in,
            hann_window=hann_window,
            bin_seconds=bin_seconds,
            seed=seed,
            device=self.device,
            threads=self.threads,
            precision=self.precision,
            **options,
        )

    def _filter_settings(self) -> Dict[str, Any]:
        """The estimator's proposal, resampling and device, as filter and smooth take them."""
        return dict(
            proposal=self.proposal,
            resampling=self.resampling,
            resample_threshold=self.resample_threshold,
            t_forward=self.t_forward,
            device=self.device,
            threads=self.threads,
            precision=self.precision,
        )

    @staticmethod
    def _check_features(data: _core.Dataset, model: _core.Model) -> None:
        """A channel count other than the model's is refused in scikit-learn's words, followed by
        the engine's (which name the layout, and the one that would match)."""
        if data.num_channels == model.config.num_channels:
            return
        try:
            _core.data_warnings(data, model)
        except _core.InvalidInputError as error:
            raise _core.InvalidInputError(
                f"{data.source} has {data.num_channels} features, but LowRankRNN is expecting "
                f"{model.config.num_channels} features as input; {error}"
            ) from None

    def transform(self, X, *, inputs=None, layout: Optional[str] = None) -> np.ndarray:
        """The filtered latents of ``X``: (trials, steps, rank) for trials, and (steps, rank) for
        one recording given as a 2-D array (a row per time step, as scikit-learn expects)."""
        one_recording = False
        if not isinstance(X, _core.Dataset):
            X = _api._as_array(X, "X")
            one_recording = X.ndim == 2
        latents = self.filter(X, inputs=inputs, layout=layout).latents
        return latents[0] if one_recording else latents

    def score(self, X, y=None, *, inputs=None, layout: Optional[str] = None, particles: int = 1000) -> float:
        """The ELBO per time step of ``X``, averaged over its trials (higher is better): on data
        held out from ``fit``, the held-out ELBO that ``GridSearchCV`` and ``cross_val_score``
        maximise. The filter's seed is fixed (0), so the same model and data give the same score.
        ``y`` is ignored."""
        del y
        return self.filter(X, inputs=inputs, layout=layout, particles=particles).elbo

    def sample(
        self,
        trials: int = 10,
        steps: int = 100,
        *,
        burn_in: int = 0,
        inputs=None,
        seed: int = 0,
        posterior_of=None,
        init_step: int = -1,
        particles: int = 1000,
    ) -> _api.Samples:
        """Generates observations, rates and latents (trials, steps, ·) from the fitted model.
        With ``posterior_of=X`` (``lrsmc sample --init posterior``) each trial of ``X`` starts a
        sequence at a draw of its posterior at step ``init_step`` (-1: the last), drawn by
        backward simulation through ``particles`` particles (:meth:`smooth`); ``trials`` is then
        the number of trials of ``X``."""
        initial_states = None
        if posterior_of is not None:
            paths = self.smooth(posterior_of, particles=particles, trajectories=1, seed=seed).trajectories
            if not -paths.shape[2] <= init_step < paths.shape[2]:
                raise _core.InvalidInputError(
                    f"init_step is out of range; got {init_step}, expected -1 or 0 to {paths.shape[2] - 1}"
                )
            initial_states = np.ascontiguousarray(paths[:, 0, init_step])
            trials = initial_states.shape[0]
        return _api.sample(
            self._fitted_model(),
            trials,
            steps,
            burn_in=burn_in,
            inputs=inputs,
            initial_states=initial_states,
            seed=seed,
            device=self.device,
            threads=self.threads,
            precision=self.precision,
            progress=_progress.resolve(self.verbose, "verbose"),
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
            readout_from=config.readout_from,
            transition_noise=config.transition_noise,
            initial_noise=config.initial_noise,
            initial_state=config.initial_state,
        ).set_params(**params)
        estimator.model_ = model
        estimator.n_features_in_ = config.num_channels
        return estimator
