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
from adamnb._io import atomic_write
from adamnb.optim import rules
from adamnb.optim.groups import Layout, check_specs, parse_groups
from adamnb.optim.matrix import MatrixOps
from adamnb.optim.schedules import Schedule, as_schedule, fresh_copy


_FLOAT_TYPES = (np.float32, np.float64)
_BACKENDS = (None, "cpu", "parallel", "cuda")


def check_vector(x, name="x", writeable=False):
    """Raise TypeError/ValueError unless ``x`` is a contiguous 1-D float32/float64 array."""
    if not isinstance(x, np.ndarray):
        if cuda_backend.is_device_array(x):
            raise TypeError(f"{name} is a CUDA device array but this step runs on the CPU (a "
                            "NumPy x, or backend='cpu' or 'parallel'): x and g must both be "
                            "NumPy arrays or both device arrays (backend='cuda' or None)")
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
    groups : list of dict, optional
        Parameter groups over the vector, as torch's param groups (:mod:`adamnb.optim.groups`):
        ``[{"params": slice(0, 100)}, {"params": [(100, 110), (120, 130)], "weight_decay": 0}]``,
        each group's options being these ``options`` updated with its own. As in torch, the list
        may also come first, positionally: ``AdamW(model.param_groups(), lr=1e-3)``. Every
        element of the vector must be in exactly one group. None: the whole vector is one group.
    **options
        The rule's hyperparameters (see each subclass), validated at construction. ``lr`` may be a
        number or a schedule (:mod:`adamnb.optim.schedules`, or any callable ``lr(t)``).
    parallel : bool or None, keyword-only
        Use the multi-threaded CPU kernel (True), the serial one (False), or decide by the
        vector's (each group view's) length (None, the default). Both give the same bits.
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
        for name in ("groups", "parallel", "backend"):
            parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY,
                                                default=None))
        cls.__init__.__signature__ = None  # the shared __init__ keeps its own signature
        cls.__signature__ = inspect.Signature(parameters[1:])

    def __init__(self, *args, groups=None, parallel=None, backend=None, **options):
        names = [hp.name for hp in self.rule.hyperparameters]
        # torch's Optimizer(params, ...); a dict is refused by parse_groups with its reason
        if args and isinstance(args[0], (list, tuple, dict)):
            if groups is not None:
                raise TypeError(f"{type(self).__name__} got the groups twice (first argument "
                                "and groups=)")
            groups, args = args[0], args[1:]
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
        self.specs = None if groups is None else parse_groups(groups)
        check_specs(self.rule, self.options, self.specs)
        self.backend = backend
        self.parallel = {"cpu": False, "parallel": True}.get(backend, parallel)
        self.reset()

    def reset(self):
        """Forget the state: the next step is step 1 again."""
        self.t = 0
        self._states = None
        self._layout = None
        self._scalars = None
        self._stream = None

    @property
    def groups(self):
        """The groups as given (:class:`adamnb.optim.groups.GroupSpec`), or None."""
        return self.specs

    @property
    def state(self):
        """The state vectors, shape (rows, n), in x's dtype and where x lives (None before the
        first step); with groups, the list of each view's state (for a view updated as a matrix,
        the tuple of its state arrays)."""
        if self._states is None:
            return None
        if self.specs is None:
            return self._states[0][0]
        return [state for state, _ in self._states]

    @property
    def scalars(self):
        """The rule's host scalars after the last step (with groups: a list, one dict per group),
        the carried scalars included."""
        if self._scalars is None:
            initial = {**self.rule.scalar_state,
                       **(self.rule.initial_carry(self.options) if self.rule.carried else {})}
            return initial if self.specs is None else None
        if self.specs is None:
            return {**self._scalars[0], **self._carried(0)}
        return [dict(values) for values in self._scalars]

    def _carried(self, index):
        if not self.rule.carried or self._states is None:
            return {}
        carry = self._states[index][1]
        carry = carry.copy_to_host() if not isinstance(carry, np.ndarray) else carry
        return {name: float(value) for name, value in zip(self.rule.carried, carry)}

    def __getstate__(self):
        # The coefficient stream and the groups' layout hold the rules' functions (lambdas, which
        # do not pickle); both are rebuilt at the next step (from t and the scalars), as after
        # load_state_dict.
        state = dict(self.__dict__)
        state["_stream"] = None
        state["_layout"] = None
        return state

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items()
                            if k not in self.rule.fixed)
        groups = "" if self.specs is None else f", groups=<{len(self.specs)} groups>"
        return f"{type(self).__name__}({options}{groups})"

    def _state_on_device(self):
        return self._states is not None and not isinstance(self._states[0][1], np.ndarray)

    def _matrix_ops_for(self, on_device):
        """The matrix steps' ops on x's device (made once; they keep scratch matrices)."""
        ops = getattr(self, "_matrix_ops", None)
        if ops is None or ops.device != on_device:
            ops = self._matrix_ops = MatrixOps(device=on_device)
        return ops

    def _layout_for(self, n):
        if self._layout is None or self._layout.n != n:
            self._layout = Layout(self.rule, self.options, self.specs, n, self.schedule)
        return self._layout

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
        this step's number, during this call (once per group with groups that have their own).
        With groups, each view is updated by one kernel call with its group's scalars.

        Raises
        ------
        TypeError
            ``x`` or ``g`` is not an array of the backend's kind, or not float32/float64.
        ValueError
            Shapes or dtypes differ, ``x`` is not flat, contiguous or writeable, the state
            belongs to another vector, or the groups do not fit ``x``.
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
        if self._states is not None and (self._states_size != x.size
                                         or self._states_dtype != x.dtype):
            raise ValueError(f"this optimizer's state is for {self._states_dtype}"
                             f"[{self._states_size}] vectors, got x of {x.dtype}[{x.size}]; "
                             "use one optimizer per parameter vector, or reset() it")
        layout = self._layout_for(x.size)
        if self._states is None:
            self._states = layout.new_states(x.dtype)
            self._states_size, self._states_dtype = x.size, x.dtype
            if on_device:
                self._states = _to_device(self._states)
        elif self._state_on_device() != on_device:
            if not on_device:
                raise ValueError("this optimizer's state lives on the CUDA device, got NumPy "
                                 "arrays; pass device arrays, or move the state with "
                                 "load_state_dict(state_dict()) into a CPU optimizer")
            self._states = _to_device(self._states)
        if self._stream is None or self._stream.dtype != x.dtype:
            self._stream = layout.stream(x.dtype, scalars=self._scalars, step=self.t)
        t = self.t + 1
        table = self._stream.columns(t, 1)
        scalar = np.dtype(x.dtype).type
        for index, piece in enumerate(layout.pieces):
            group = layout.groups[piece.group]
            c = tuple(scalar(value) for value in table[layout.rows(index), 0])
            state, carry = self._states[index]
            if piece.matrix:
                values = dict(zip(group.rule.scalars, c))
                group.rule.matrix.step(layout.matrix(x, index), layout.matrix(g, index), state,
                                       values, group.options, self._matrix_ops_for(on_device))
            elif on_device:
                cuda_backend.step(group.rule, layout.view(x, index), layout.view(g, index),
                                  state, carry, c)
            else:
                kernel = kernels.cpu_kernel(group.rule,
                                            kernels.use_parallel(self.parallel, piece.size))
                kernel(layout.view(x, index), layout.view(g, index), state, carry, c)
        self.t, self._scalars = t, self._stream.scalars

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
        if self._states is None:
            return {}
        host = x.copy_to_host() if self._state_on_device() else np.asarray(x)
        return self._layout_for(host.size).outputs(host, _to_host(self._states))

    def state_dict(self):
        """A snapshot of the optimizer: method, options, step count, state vectors, host scalars
        (and the groups, with groups).

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
            ``exp_avg``, ...), ``scalars`` holds the rule's host and carried scalars. With groups,
            also ``"groups"`` (each group's views and own options), and ``state`` is a list, one
            ``{slot: array}`` per view (``"carry"``: its carried scalars, for a rule that has
            them), ``scalars`` one dict per group.
        """
        states = _to_host(self._states) if self._states is not None else None
        options = {name: fresh_copy(value) for name, value in self.options.items()}
        if self.specs is None:
            state = {} if states is None else {
                slot: states[0][0][row].copy()
                for row, slot in enumerate(self.rule.slots[:states[0][0].shape[0]])}
            return {"method": self.rule.name, "options": options, "step": self.t,
                    "state": state, "scalars": self.scalars}
        pieces = []
        if states is not None:
            layout = self._layout_for(self._states_size)  # none yet right after a load
            for index, (state, carry) in enumerate(states):
                slots = layout.slots(index)
                arrays = state if isinstance(state, tuple) else list(state)
                entry = {slot: np.array(array, copy=True) for slot, array in zip(slots, arrays)}
                if carry.size:
                    entry["carry"] = carry.copy()
                pieces.append(entry)
        return {"method": self.rule.name, "options": options, "groups": _groups_dict(self.specs),
                "step": self.t, "state": pieces,
                "scalars": [dict(values) for values in self._scalars]
                if self._scalars is not None else None}

    def load_state_dict(self, state_dict):
        """Restore a snapshot from :meth:`state_dict` (options, groups, step count, state and
        scalars).

        Everything is checked before anything changes, so a rejected snapshot leaves this
        optimizer as it was. A stateful schedule in the snapshot is copied: after loading, step
        it through ``optimizer.schedule``. The state goes to the CUDA device for
        ``backend="cuda"`` or when this optimizer's state is there already; otherwise it stays
        on the host until a step with device arrays.

        Raises
        ------
        ValueError
            A key is missing or unknown; the method differs; an option is unknown or invalid;
            the groups are malformed; ``step`` is not an integer >= 0; the state vectors are not
            the rule's slots for these options, differ in length or dtype, are not flat
            float32/float64 or hold NaN/inf; the host scalars are not exactly the rule's, or
            not finite.
        """
        loaded = _checked_state_dict(self.rule, state_dict)
        to_device = self.backend == "cuda" or self._state_on_device()
        options, specs, step, states, scalars, size, dtype = loaded
        options["lr"] = fresh_copy(options["lr"])
        self.options, self.specs = options, specs
        self.schedule = as_schedule(options["lr"])
        self.t = step
        self._layout = None
        self._stream = None
        self._scalars = scalars
        self._states = states
        self._states_size, self._states_dtype = size, dtype
        if states is not None and to_device:
            self._states = _to_device(states)


def _to_device(states):
    return [(tuple(cuda_backend.to_device(a) for a in state) if isinstance(state, tuple)
             else cuda_backend.to_device(state), cuda_backend.to_device(carry))
            for state, carry in states]


def _to_host(states):
    def host(array):
        return array if isinstance(array, np.ndarray) else array.copy_to_host()
    return [(tuple(host(a) for a in state) if isinstance(state, tuple) else host(state),
             host(carry)) for state, carry in states]


def _groups_dict(specs):
    """The groups as plain data: views as [start, stop, shape, order] lists."""
    groups = []
    for spec in specs:
        group = {"params": [[view.start, view.stop,
                             None if view.shape is None else list(view.shape), view.order]
                            for view in spec.views]}
        if spec.method is not None:
            group["method"] = spec.method
        group.update({name: fresh_copy(value) for name, value in spec.options.items()})
        groups.append(group)
    return groups


_STATE_DICT_KEYS = ("method", "options", "step", "state", "scalars")


def _checked_state_dict(rule, state_dict):
    """(options, groups, step, states, scalars, size, dtype) from a state_dict, all checked; see
    :meth:`Optimizer.load_state_dict`. ``states`` is None before the first step."""
    if not isinstance(state_dict, dict):
        raise ValueError(f"state_dict must be a dict, got {type(state_dict).__name__}")
    keys = _STATE_DICT_KEYS + (("groups",) if "groups" in state_dict else ())
    missing = [key for key in keys if key not in state_dict]
    unknown = sorted(set(state_dict) - set(keys))
    if missing or unknown:
        raise ValueError(f"state_dict has keys {sorted(state_dict)}: missing {missing}, "
                         f"unknown {unknown}; expected {list(keys)}")
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
    if "groups" not in state_dict:
        return (options, None, step) + _checked_vector_state(rule, options, step, state_dict)
    try:
        specs = parse_groups(state_dict["groups"])
    except TypeError as error:
        raise ValueError(f"state_dict's groups: {error}") from None
    check_specs(rule, options, specs)
    size = sum(view.stop - view.start for spec in specs for view in spec.views)
    layout = Layout(rule, options, specs, size, as_schedule(options["lr"]))
    return (options, specs, step) + _checked_group_state(layout, step, state_dict)


def _checked_vector_state(rule, options, step, state_dict):
    saved = state_dict["state"]
    expected = rule.slots[:rule.rows(options)] if step > 0 else ()
    if not isinstance(saved, dict) or set(saved) != set(expected):
        raise ValueError(f"state_dict holds state {sorted(saved)}, expected {list(expected)} "
                         f"for {rule.name!r} with these options at step {step}")
    vectors = [np.asarray(saved[slot]) for slot in expected]
    for slot, vector in zip(expected, vectors):
        check_vector(vector, f"state[{slot!r}]")
        _check_saved_array(vector, f"state[{slot!r}]", vectors[0].shape, vectors[0].dtype)
    expected_scalars = set(rule.scalar_state) | set(rule.carried)
    scalars = state_dict["scalars"]
    if not isinstance(scalars, dict) or set(scalars) != expected_scalars:
        raise ValueError(f"state_dict's scalars are {scalars!r}; {rule.name!r} keeps exactly "
                         f"{sorted(expected_scalars) or 'none'}")
    checked = _finite_scalars(scalars, "state_dict")
    host = {name: checked[name] for name in rule.scalar_state}
    if step == 0:
        return None, [host], None, None
    size = vectors[0].size if vectors else None
    dtype = vectors[0].dtype if vectors else None
    if size is None:  # a configuration without state vectors (plain SGD): sized by x
        return None, [host], None, None
    carry = np.array([checked[name] for name in rule.carried], dtype=dtype)
    state = np.stack(vectors) if vectors else np.zeros((0, size), dtype)
    return [(state, carry)], [host], size, dtype


def _checked_group_state(layout, step, state_dict):
    saved, scalars = state_dict["state"], state_dict["scalars"]
    if step == 0:
        if saved not in ([], None) or scalars is not None:
            raise ValueError("state_dict at step 0 holds state or scalars")
        return None, None, None, None
    if not isinstance(saved, list) or len(saved) != len(layout.pieces):
        raise ValueError(f"state_dict's state is not a list of {len(layout.pieces)} views' state")
    if not isinstance(scalars, list) or len(scalars) != len(layout.groups):
        raise ValueError(f"state_dict's scalars are not a list of {len(layout.groups)} groups' "
                         "scalars")
    host = []
    for number, (group, values) in enumerate(zip(layout.groups, scalars)):
        if not isinstance(values, dict) or set(values) != set(group.rule.scalar_state):
            raise ValueError(f"state_dict's scalars of group {number} are {values!r}; "
                             f"{group.rule.name!r} keeps exactly "
                             f"{sorted(group.rule.scalar_state) or 'none'}")
        host.append(_finite_scalars(values, f"group {number}"))
    dtype = None
    states = []
    for index, (piece, entry) in enumerate(zip(layout.pieces, saved)):
        group = layout.groups[piece.group]
        slots = layout.slots(index)
        expected = set(slots) | ({"carry"} if group.rule.carried else set())
        if not isinstance(entry, dict) or set(entry) != expected:
            raise ValueError(f"state_dict's state of view {index} holds "
                             f"{sorted(entry) if isinstance(entry, dict) else entry!r}, expected "
                             f"{sorted(expected)}")
        arrays = [np.asarray(entry[slot]) for slot in slots]
        if piece.matrix:
            shapes = group.rule.matrix.shapes(group.options, piece.shape)
        else:
            shapes = [(piece.size,)] * len(slots)
        for slot, array, shape in zip(slots, arrays, shapes):
            dtype = dtype or array.dtype
            _check_saved_array(array, f"state[{index}][{slot!r}]", tuple(shape), dtype)
        carry = np.asarray(entry.get("carry", np.zeros(0, dtype or np.float64)))
        if piece.matrix:
            state = tuple(np.array(array, copy=True) for array in arrays)
        else:
            state = np.stack(arrays) if arrays else np.zeros((0, piece.size), dtype or np.float64)
        states.append((state, carry))
    if dtype is None:
        dtype = np.dtype(np.float64)
    states = [(state if isinstance(state, tuple) or state.size else state.astype(dtype),
               carry.astype(dtype)) for state, carry in states]
    return states, host, layout.n, np.dtype(dtype)


def _check_saved_array(array, name, shape, dtype):
    if len(shape) == 1:
        check_vector(array, name)
    elif not isinstance(array, np.ndarray) or array.dtype.type not in _FLOAT_TYPES:
        raise ValueError(f"{name} must be a float32 or float64 array")
    if array.shape != shape or array.dtype != dtype:
        raise ValueError(f"{name} is {array.dtype}{list(array.shape)}, expected "
                         f"{np.dtype(dtype)}{list(shape)}: the state vectors differ in length or "
                         "dtype")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or inf; a run that diverged cannot be resumed")


def _finite_scalars(values, where):
    checked = {}
    for name, value in values.items():
        number = float(value) if np.ndim(value) == 0 and np.isrealobj(value) else math.nan
        if not math.isfinite(number):
            raise ValueError(f"{where}'s scalar {name}={value!r} is not a finite number")
        checked[name] = number
    return checked


def save_state_dict(state_dict, file):
    """Write an optimizer's :meth:`~Optimizer.state_dict` to ``file`` without pickle.

    One ``.npz`` file: the state vectors as arrays, and the method, options (built-in schedules
    included), groups, step and host scalars as JSON. Written atomically: an interrupted save
    leaves the previous file intact. :func:`load_state_dict` reads it back, bit for bit.

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
            "options": _options_to_json(state_dict["options"])}
    if "groups" in state_dict:
        meta["groups"] = [{key: value if key in ("params", "method")
                           else _option_to_json(key, value) for key, value in group.items()}
                          for group in state_dict["groups"]]
        meta["scalars"] = None if state_dict["scalars"] is None else [
            {name: float(value) for name, value in values.items()}
            for values in state_dict["scalars"]]
        arrays = {f"state/{index}/{slot}": np.asarray(array)
                  for index, entry in enumerate(state_dict["state"])
                  for slot, array in entry.items()}
        meta["views"] = len(state_dict["state"])
    else:
        meta["scalars"] = {name: float(value) for name, value in state_dict["scalars"].items()}
        arrays = {f"state/{slot}": np.asarray(vector)
                  for slot, vector in state_dict["state"].items()}
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
    try:
        archive = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        # numpy reads a text file as a pickle and says so; name what was expected instead.
        raise ValueError(f"{file} is not an adamnb optimizer state (an .npz archive written by "
                         f"save_state_dict): numpy cannot read it as one ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{file} is not an adamnb optimizer state (an .npz archive written by "
                         f"save_state_dict), but a single array")
    with archive:
        if "meta" not in archive.files:
            raise ValueError(f"{file} is not an adamnb optimizer state (no 'meta' entry)")
        meta = json.loads(str(archive["meta"]))
        arrays = {name.split("/", 1)[1]: archive[name] for name in archive.files
                  if name.startswith("state/")}
    if meta.get("format") != "adamnb.optimizer_state":
        raise ValueError(f"{file} is not an adamnb optimizer state")
    loaded = {"method": meta["method"], "options": _options_from_json(meta["options"]),
              "step": meta["step"], "scalars": meta["scalars"]}
    if "groups" not in meta:
        loaded["state"] = arrays
        return loaded
    loaded["groups"] = [{key: value if key in ("params", "method") else
                         _option_from_json(value) for key, value in group.items()}
                        for group in meta["groups"]]
    state = [{} for _ in range(meta["views"])]
    for name, array in arrays.items():
        index, slot = name.split("/", 1)
        state[int(index)][slot] = array
    loaded["state"] = state
    return loaded


def _options_to_json(options):
    return {name: _option_to_json(name, value) for name, value in options.items()}


def _options_from_json(options):
    return {name: _option_from_json(value) for name, value in options.items()}


def _option_to_json(name, value):
    if isinstance(value, Schedule):
        return {"schedule": value.to_dict()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"option {name}={value!r} cannot be saved without pickle: only numbers, "
                    "booleans, strings and the schedules of adamnb.optim.schedules can")


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
