"""Stateful optimizers for hand-written training loops: ``Adam(lr=1e-3).step(x, g)``.

Each class is a thin shell around one rule of :mod:`adamnb.optim.rules`: it validates the options once,
creates the state vectors on the first :meth:`~Optimizer.step` (typed like ``x``), and calls the
rule's compiled kernel, which updates ``x`` and the state in place in a single pass.

The same classes drive the CUDA kernels (:mod:`adamnb.backends.cuda`): give ``step`` device arrays (numba
device arrays, CuPy arrays, CUDA torch tensors) and the state is created on, and stays on, the
device; ``backend="cuda"`` insists on it.

Example
-------
>>> import numpy as np, adamnb
>>> x = np.array([1.0, -2.0])
>>> opt = adamnb.Adam(lr=0.1)
>>> for _ in range(200):
...     opt.step(x, 2 * x)          # gradient of ||x||^2
>>> bool(np.abs(x).max() < 0.05)
True
"""

import inspect
import json
import math

import numpy as np

from adamnb.backends import cpu as kernels
from adamnb.backends import cuda as cuda_backend
from adamnb.optim import rules
from adamnb._io import atomic_write
from adamnb.optim.schedules import Schedule, as_schedule, fresh_copy


_FLOAT_TYPES = (np.float32, np.float64)
_BACKENDS = (None, "cpu", "parallel", "cuda")


def check_vector(x, name="x", writeable=False):
    """Raise TypeError/ValueError unless ``x`` is a contiguous 1-D float32/float64 array."""
    if not isinstance(x, np.ndarray):
        if cuda_backend.is_device_array(x):
            raise TypeError(f"{name} is a CUDA device array; this optimizer runs on the CPU "
                            "(backend='cpu' or 'parallel'); use backend='cuda' or None")
        raise TypeError(f"{name} must be a NumPy array, got {type(x).__name__}")
    if x.dtype.type not in _FLOAT_TYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if x.ndim != 1:
        raise ValueError(f"{name} must be a flat 1-D array, got shape {x.shape}; flatten it "
                         "(a view such as x.reshape(-1) is updated in place)")
    if not x.flags.c_contiguous:
        raise ValueError(f"{name} must be contiguous; pass np.ascontiguousarray({name})")
    if writeable and not x.flags.writeable:
        raise ValueError(f"{name} is read-only; the optimizer updates it in place")


class Optimizer:
    """Base class: one update rule, its validated options and its state for one parameter vector.

    Parameters
    ----------
    **options
        The rule's hyperparameters (see each subclass), validated at construction. ``lr`` may be a
        number or a schedule (:mod:`adamnb.optim.schedules`, or any callable ``lr(t)``).
    parallel : bool or None, keyword-only
        Use the multi-threaded CPU kernel (True), the serial one (False), or decide by the
        vector's length (None, the default). Both give the same bits.
    backend : {None, "cpu", "parallel", "cuda"}, keyword-only
        Where the update runs. None (the default) follows the arrays given to :meth:`step`: CUDA
        device arrays run the CUDA kernel, NumPy arrays the CPU kernels as chosen by
        ``parallel``. "cpu" is the serial CPU kernel, "parallel" the threaded one (pass
        ``parallel`` only with backend None). "cuda" accepts only device arrays and raises
        RuntimeError at construction when CUDA is unavailable; it never falls back to the CPU.
    """

    rule = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        parameters += [inspect.Parameter(hp.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                         default=hp.default) for hp in cls.rule.hyperparameters]
        parameters.append(inspect.Parameter("parallel", inspect.Parameter.KEYWORD_ONLY,
                                            default=None))
        parameters.append(inspect.Parameter("backend", inspect.Parameter.KEYWORD_ONLY,
                                            default=None))
        cls.__init__.__signature__ = None  # the shared __init__ keeps its own signature
        cls.__signature__ = inspect.Signature(parameters[1:])

    def __init__(self, *args, parallel=None, backend=None, **options):
        names = [hp.name for hp in self.rule.hyperparameters]
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes at most {len(names)} positional "
                            f"options ({', '.join(names)}), got {len(args)}")
        for name, value in zip(names, args):
            if name in options:
                raise TypeError(f"{type(self).__name__} got multiple values for option {name!r}")
            options[name] = value
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected option(s) {', '.join(unknown)}; "
                            f"valid options are: {', '.join(names)}")
        if parallel not in (None, True, False):
            raise ValueError(f"Invalid parallel: {parallel!r}; expected True, False or None")
        if backend not in _BACKENDS:
            raise ValueError(f"Invalid backend: {backend!r}; expected None, 'cpu', 'parallel' "
                             "or 'cuda'")
        if backend is not None and parallel is not None:
            raise ValueError(f"backend={backend!r} already chooses the kernel; pass parallel only "
                             "with backend=None")
        if backend == "cuda" and not cuda_backend.is_available():
            raise RuntimeError("backend='cuda' was requested but CUDA is unavailable: no CUDA "
                               "driver or GPU was found (numba.cuda.is_available() is False). "
                               "Install the NVIDIA driver and numba-cuda, or set "
                               "NUMBA_ENABLE_CUDASIM=1 before importing numba to use the simulator")
        self.options = self.rule.validate(options)
        self.schedule = as_schedule(self.options["lr"])
        self.backend = backend
        self.parallel = {"cpu": False, "parallel": True}.get(backend, parallel)
        self.reset()

    def reset(self):
        """Forget the state: the next step is step 1 again."""
        self.t = 0
        self.state = None
        self.scalars = dict(self.rule.scalar_state)
        self._stream = None

    def __getstate__(self):
        # The coefficient stream holds the rule's functions (lambdas, which do not pickle); it is
        # rebuilt from t and the scalars at the next step, as after load_state_dict.
        state = dict(self.__dict__)
        state["_stream"] = None
        return state

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items()
                            if k not in self.rule.fixed)
        return f"{type(self).__name__}({options})"

    def _state_on_device(self):
        return self.state is not None and not isinstance(self.state, np.ndarray)

    def step(self, x, g):
        """Apply one update to ``x`` in place, given the gradient ``g`` at ``x``.

        Parameters
        ----------
        x : ndarray or device array, shape (n,), float32 or float64
            A contiguous flat view of the model's parameters, updated in place. NumPy arrays for
            the CPU backends, device arrays for the CUDA one (no copies are made).
        g : same type, shape and dtype as ``x``
            The gradient at ``x``.

        The first call creates the state, typed like ``x`` and where ``x`` lives; later calls
        must pass arrays of the same length and dtype. A state loaded with
        :meth:`load_state_dict` moves to the device on the first step with device arrays; a
        state on the device never moves back silently. A callable ``lr`` is called once, with
        this step's number, during this call.

        Raises
        ------
        TypeError
            ``x`` or ``g`` is not an array of the backend's kind, or not float32/float64.
        ValueError
            Shapes or dtypes differ, ``x`` is not flat, contiguous or writeable, or the state
            belongs to another vector.
        """
        on_device = self.backend == "cuda" or (
            self.backend is None and cuda_backend.is_device_array(x))
        if on_device:
            x = cuda_backend.check_device_vector(x, "x")
            g = cuda_backend.check_device_vector(g, "g")
        else:
            check_vector(x, "x", writeable=True)
            check_vector(g, "g")
        if g.shape != x.shape or g.dtype != x.dtype:
            raise ValueError(f"gradient must match x: x is {x.dtype}{list(x.shape)}, "
                             f"g is {g.dtype}{list(g.shape)}")
        if self.state is None:
            state = self.rule.state_vectors(self.options, x.size, x.dtype)
            self.state = cuda_backend.to_device(state) if on_device else state
        elif self.state.shape[1] != x.size or self.state.dtype != x.dtype:
            raise ValueError(f"this optimizer's state is for {self.state.dtype}"
                             f"[{self.state.shape[1]}] vectors, got x of {x.dtype}[{x.size}]; "
                             "use one optimizer per parameter vector, or reset() it")
        elif self._state_on_device() != on_device:
            if not on_device:
                raise ValueError("this optimizer's state lives on the CUDA device, got NumPy "
                                 "arrays; pass device arrays, or move the state with "
                                 "load_state_dict(state_dict()) into a CPU optimizer")
            self.state = cuda_backend.to_device(self.state)
        if self._stream is None or self._stream.dtype != x.dtype:
            self._stream = self.rule.stream(self.options, self.schedule, x.dtype,
                                            scalars=self.scalars, step=self.t)
        t = self.t + 1
        c = self._stream.step(t)
        if on_device:
            cuda_backend.step(self.rule, x, g, self.state, c)
        else:
            kernel = kernels.cpu_kernel(self.rule, kernels.use_parallel(self.parallel, x.size))
            kernel(x, g, self.state, c)
        self.t, self.scalars = t, dict(self._stream.scalars)

    def outputs(self, x):
        """The rule's extra results at iterate ``x`` (its current state), as host arrays: ASGD's
        averaged iterate ``{"ax": ...}``; schedule-free AdamW's evaluation point, iterate and
        z sequence ``{"x": ..., "y": ..., "z": ...}`` (optax's ``schedule_free_eval_params``);
        ``{}`` for the other rules, and before the first step.

        Parameters
        ----------
        x : ndarray or device array, shape (n,)
            The vector this optimizer updates.
        """
        if self.rule.outputs is None or self.state is None:
            return {}
        on_device = self._state_on_device()
        state = self.state.copy_to_host() if on_device else self.state
        host = x.copy_to_host() if on_device else np.asarray(x)
        return self.rule.outputs(self.options, host, state)

    def state_dict(self):
        """A snapshot of the optimizer: method, options, step count, state vectors, host scalars.

        Loading it into a new optimizer with :meth:`load_state_dict` resumes the run with exactly
        the same bits as an uninterrupted one. It holds plain Python values and NumPy arrays (an
        ``lr`` schedule is kept as the object itself; a state on the CUDA device is copied to
        host arrays). :func:`save_state_dict` stores it without pickle.

        A schedule that holds state (:class:`adamnb.optim.schedules.ReduceLROnPlateau`) is copied
        as it is now: the snapshot does not change when the schedule steps on.

        Returns
        -------
        dict
            ``{"method": str, "options": dict, "step": int, "state": {slot: ndarray},
            "scalars": {name: float}}``; ``state`` names the rule's slots (torch's
            ``exp_avg``, ...).
        """
        state = self.state.copy_to_host() if self._state_on_device() else self.state
        rows = 0 if state is None else state.shape[0]
        return {
            "method": self.rule.name,
            "options": {name: fresh_copy(value) for name, value in self.options.items()},
            "step": self.t,
            "state": {slot: state[row].copy()
                      for row, slot in enumerate(self.rule.slots[:rows])},
            "scalars": dict(self.scalars),
        }

    def load_state_dict(self, state_dict):
        """Restore a snapshot from :meth:`state_dict` (options, step count, state and scalars).

        Everything is checked before anything changes, so a rejected snapshot leaves this
        optimizer as it was. A stateful schedule in the snapshot is copied: after loading, step
        it through ``optimizer.schedule``. The state goes to the CUDA device for
        ``backend="cuda"`` or when this optimizer's state is there already; otherwise it stays
        on the host until a step with device arrays.

        Raises
        ------
        ValueError
            A key is missing or unknown; the method differs; an option is unknown or invalid;
            ``step`` is not an integer >= 0; the state vectors are not the rule's slots for these
            options, differ in length or dtype, are not flat float32/float64 or hold NaN/inf; the
            host scalars are not exactly the rule's, or not finite.
        """
        options, step, vectors, scalars = _checked_state_dict(self.rule, state_dict)
        to_device = self.backend == "cuda" or self._state_on_device()
        options["lr"] = fresh_copy(options["lr"])
        self.options = options
        self.schedule = as_schedule(options["lr"])
        self.t = step
        self.scalars = scalars
        self._stream = None
        if vectors:
            self.state = np.stack(vectors)
            if to_device:
                self.state = cuda_backend.to_device(self.state)
        else:  # step 0, or a configuration without state vectors (plain SGD)
            self.state = None


_STATE_DICT_KEYS = ("method", "options", "step", "state", "scalars")


def _checked_state_dict(rule, state_dict):
    """(options, step, state vectors, scalars) from a state_dict, all checked; see
    :meth:`Optimizer.load_state_dict`."""
    if not isinstance(state_dict, dict):
        raise ValueError(f"state_dict must be a dict, got {type(state_dict).__name__}")
    missing = [key for key in _STATE_DICT_KEYS if key not in state_dict]
    unknown = sorted(set(state_dict) - set(_STATE_DICT_KEYS))
    if missing or unknown:
        raise ValueError(f"state_dict has keys {sorted(state_dict)}: missing {missing}, "
                         f"unknown {unknown}; expected {list(_STATE_DICT_KEYS)}")
    if state_dict["method"] != rule.name:
        raise ValueError(f"state_dict is for method {state_dict['method']!r}, not {rule.name!r}")
    saved_options = state_dict["options"]
    names = {hp.name for hp in rule.hyperparameters} | set(rule.fixed)
    if not isinstance(saved_options, dict) or set(saved_options) - names:
        raise ValueError(f"state_dict's options {sorted(saved_options)} are not all options of "
                         f"{rule.name!r} ({', '.join(sorted(names))})")
    options = rule.validate(saved_options)
    step = state_dict["step"]
    if np.ndim(step) == 0 and isinstance(getattr(step, "item", lambda: step)(), int) \
            and not isinstance(step, (bool, np.bool_)):
        step = int(step)  # a 0-d integer array (np.load) is a step count too
    if not isinstance(step, int) or step < 0:
        raise ValueError(f"Invalid step in state_dict: {state_dict['step']!r}; expected an "
                         "integer >= 0")
    saved = state_dict["state"]
    expected = rule.slots[:rule.rows(options)] if step > 0 else ()
    if not isinstance(saved, dict) or set(saved) != set(expected):
        raise ValueError(f"state_dict holds state {sorted(saved)}, expected {list(expected)} "
                         f"for {rule.name!r} with these options at step {step}")
    vectors = [np.asarray(saved[slot]) for slot in expected]
    for slot, vector in zip(expected, vectors):
        check_vector(vector, f"state[{slot!r}]")
        if vector.shape != vectors[0].shape or vector.dtype != vectors[0].dtype:
            raise ValueError("state_dict's state vectors differ in length or dtype")
        if not np.isfinite(vector).all():
            raise ValueError(f"state[{slot!r}] holds NaN or inf; a run that diverged cannot be "
                             "resumed")
    scalars = state_dict["scalars"]
    if not isinstance(scalars, dict) or set(scalars) != set(rule.scalar_state):
        raise ValueError(f"state_dict's scalars are {scalars!r}; {rule.name!r} keeps exactly "
                         f"{sorted(rule.scalar_state) or 'none'}")
    checked = {}
    for name, value in scalars.items():
        number = float(value) if np.ndim(value) == 0 and np.isrealobj(value) else math.nan
        if not math.isfinite(number):
            raise ValueError(f"state_dict's scalar {name}={value!r} is not a finite number")
        checked[name] = number
    return options, step, vectors, checked


def save_state_dict(state_dict, file):
    """Write an optimizer's :meth:`~Optimizer.state_dict` to ``file`` without pickle.

    One ``.npz`` file: the state vectors as arrays, and the method, options (built-in schedules
    included), step and host scalars as JSON. Written atomically: an interrupted save leaves the
    previous file intact. :func:`load_state_dict` reads it back, bit for bit.

    Parameters
    ----------
    state_dict : dict
        From :meth:`Optimizer.state_dict`.
    file : str or path-like
        Where to write (conventionally ``*.npz``).

    Raises
    ------
    TypeError
        An option cannot be stored without pickle: a user's callable ``lr`` (store its
        parameters yourself and pass the callable again), or another object.
    """
    meta = {"format": "adamnb.optimizer_state", "version": 1,
            "method": state_dict["method"], "step": int(state_dict["step"]),
            "options": {name: _option_to_json(name, value)
                        for name, value in state_dict["options"].items()},
            "scalars": {name: float(value) for name, value in state_dict["scalars"].items()}}
    arrays = {f"state/{slot}": np.asarray(vector) for slot, vector in state_dict["state"].items()}
    with atomic_write(file, "wb") as stream:
        np.savez(stream, meta=np.array(json.dumps(meta)), **arrays)


def load_state_dict(file):
    """Read a state_dict written by :func:`save_state_dict` (no pickle involved).

    Returns
    -------
    dict
        The state_dict, ready for :meth:`Optimizer.load_state_dict` (which checks it).

    Raises
    ------
    ValueError
        The file is not an adamnb optimizer state.
    """
    with np.load(file, allow_pickle=False) as archive:
        if "meta" not in archive.files:
            raise ValueError(f"{file} is not an adamnb optimizer state (no 'meta' entry)")
        meta = json.loads(str(archive["meta"]))
        state = {name.split("/", 1)[1]: archive[name] for name in archive.files
                 if name.startswith("state/")}
    if meta.get("format") != "adamnb.optimizer_state":
        raise ValueError(f"{file} is not an adamnb optimizer state")
    return {"method": meta["method"],
            "options": {name: _option_from_json(value) for name, value in meta["options"].items()},
            "step": meta["step"], "state": state, "scalars": meta["scalars"]}


def _option_to_json(name, value):
    if isinstance(value, Schedule):
        return {"schedule": value.to_dict()}
    if isinstance(value, (bool, int, float)):
        return value
    raise TypeError(f"option {name}={value!r} cannot be saved without pickle: only numbers, "
                    "booleans and the schedules of adamnb.optim.schedules can")


def _option_from_json(value):
    if isinstance(value, dict) and "schedule" in value:
        return Schedule.from_dict(value["schedule"])
    return value


def _class_doc(rule):
    lines = [f"{rule.summary[0].upper()}{rule.summary[1:]}, as {rule.library}.", ""]
    if rule.doc:
        lines += [inspect.cleandoc(rule.doc), ""]
    lines += ["Parameters", "----------"]
    for hp in rule.hyperparameters:
        kind = {"lr": "float or schedule", "bool": "bool", "int": "int"}.get(hp.kind, "float")
        lines += [f"{hp.name} : {kind}, default {hp.default!r}",
                  f"    {hp.doc[0].upper()}{hp.doc[1:]}; {hp.range_text()}."]
    lines += ["parallel, backend : keyword-only", "    Where the update runs; see :class:`Optimizer`.",
              "", "Raises", "------", "ValueError",
              "    An option out of its range (the message names it and the range).", "TypeError",
              "    An unknown option (the message lists the valid ones).", "", "Notes", "-----",
              f"Source: {rule.source}."]
    return "\n".join(lines) + "\n"


#: The optimizer class of each method name that has one ("amsgrad" is Adam(amsgrad=True)).
OPTIMIZERS = {}
for _rule in rules.RULES.values():
    if _rule.class_name is not None:
        OPTIMIZERS[_rule.name] = type(_rule.class_name, (Optimizer,),
                                      {"rule": _rule, "__doc__": _class_doc(_rule),
                                       "__module__": __name__, "__qualname__": _rule.class_name})
        globals()[_rule.class_name] = OPTIMIZERS[_rule.name]
del _rule

__all__ = ["Optimizer", "OPTIMIZERS", "check_vector", "save_state_dict", "load_state_dict", *(cls.__name__ for cls in OPTIMIZERS.values())]
