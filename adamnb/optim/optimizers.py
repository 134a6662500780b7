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

import numpy as np

from adamnb.backends import cpu as kernels
from adamnb.backends import cuda as cuda_backend
from adamnb.optim import rules
from adamnb.optim.schedules import as_schedule

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax",
           "NAdam", "RAdam"]

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

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items()
                            if k not in self.rule.fixed)
        return f"{type(self).__name__}({options})"

    def _state_on_device(self):
        return self.state is not None and not isinstance(self.state, np.ndarray)

    def step(self, x, g):
        """Apply one update to ``x`` in place, given the gradient ``g`` at ``x``.

        ``x`` is a contiguous 1-D float32 or float64 array (a flat view of the model's
        parameters); ``g`` has the same shape and dtype. Both are NumPy arrays for the CPU
        backends and device arrays for the CUDA one (no copies are made). The first call creates
        the state, typed like ``x`` and where ``x`` lives; later calls must pass arrays of the
        same length and dtype. A state loaded with :meth:`load_state_dict` moves to the device on
        the first step with device arrays; a state on the device never moves back silently.
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
        t = self.t + 1
        coefficients, scalars = self.rule.step_coefficients(self.options, t, self.schedule(t),
                                                            self.scalars)
        c = kernels.cast_coefficients(coefficients, x.dtype)
        if on_device:
            cuda_backend.step(self.rule, x, g, self.state, c)
        else:
            kernel = kernels.cpu_kernel(self.rule, kernels.use_parallel(self.parallel, x.size))
            kernel(x, g, self.state, c)
        self.t, self.scalars = t, scalars

    def state_dict(self):
        """A snapshot of the optimizer: options, step count and copies of the state vectors.

        Loading it into a new optimizer with :meth:`load_state_dict` resumes the run with exactly
        the same bits as an uninterrupted one. Everything in it is plain Python or NumPy (an
        ``lr`` schedule is kept as the object itself), so ``pickle`` or ``np.savez`` can store it;
        a state on the CUDA device is copied to host arrays.
        """
        state = self.state.copy_to_host() if self._state_on_device() else self.state
        rows = 0 if state is None else state.shape[0]
        return {
            "method": self.rule.name,
            "options": dict(self.options),
            "step": self.t,
            "state": {slot: state[row].copy()
                      for row, slot in enumerate(self.rule.slots[:rows])},
            "scalars": dict(self.scalars),
        }

    def load_state_dict(self, state_dict):
        """Restore a snapshot from :meth:`state_dict` (options, step count and state).

        The state goes to the CUDA device for ``backend="cuda"`` or when this optimizer's state
        is there already; otherwise it stays on the host until a step with device arrays.
        """
        method = state_dict.get("method")
        if method != self.rule.name:
            raise ValueError(f"state_dict is for method {method!r}, not {self.rule.name!r}")
        options = self.rule.validate({k: v for k, v in state_dict["options"].items()
                                      if k not in self.rule.fixed})
        step = state_dict["step"]
        if not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"Invalid step in state_dict: {step!r}")
        saved = state_dict["state"]
        expected = self.rule.slots[:self.rule.rows(options)]
        if step > 0 and set(saved) != set(expected):
            raise ValueError(f"state_dict holds state {sorted(saved)}, expected {list(expected)}")
        vectors = [np.asarray(saved[slot]) for slot in expected] if step > 0 else []
        for slot, vector in zip(expected, vectors):
            check_vector(vector, f"state[{slot!r}]")
            if vector.shape != vectors[0].shape or vector.dtype != vectors[0].dtype:
                raise ValueError("state_dict's state vectors differ in length or dtype")
        to_device = self.backend == "cuda" or self._state_on_device()
        self.options = options
        self.schedule = as_schedule(options["lr"])
        self.t = int(step)
        self.scalars = dict(state_dict.get("scalars", self.rule.scalar_state))
        if step == 0:
            self.state = None
        elif vectors:
            self.state = np.stack(vectors)
            if to_device:
                self.state = cuda_backend.to_device(self.state)
        else:  # a rule configuration without state vectors (plain SGD)
            self.state = None


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum and Nesterov momentum.

    As torch.optim.SGD. With weight decay :math:`\lambda`, momentum :math:`\mu`, dampening
    :math:`\tau`:

    .. math::

        g_t &\leftarrow g_t + \lambda x_{t-1} \\
        b_t &= \begin{cases} g_t & t = 1 \\ \mu b_{t-1} + (1-\tau) g_t & t > 1 \end{cases} \\
        g_t &\leftarrow g_t + \mu b_t \ \text{(nesterov)} \quad\text{or}\quad g_t \leftarrow b_t \\
        x_t &= x_{t-1} - \eta_t g_t

    The momentum steps apply only when :math:`\mu \ne 0`. Nesterov requires :math:`\mu > 0` and
    :math:`\tau = 0`.

    Parameters
    ----------
    lr : float or schedule, default 1e-3
    momentum : float, default 0
    dampening : float in [0, 1], default 0
    weight_decay : float, default 0
    nesterov : bool, default False
    """

    rule = rules.SGD


class Adagrad(Optimizer):
    r"""Adagrad (Duchi, Hazan & Singer, 2011), as torch.optim.Adagrad.

    .. math::

        g_t &\leftarrow g_t + \lambda x_{t-1}, \qquad
        \tilde\eta_t = \eta_t / (1 + (t-1)\,\mathrm{lr\_decay}) \\
        s_t &= s_{t-1} + g_t^2 \qquad (s_0 = \mathrm{initial\_accumulator\_value}) \\
        x_t &= x_{t-1} - \tilde\eta_t\, g_t / (\sqrt{s_t} + \epsilon)

    Parameters
    ----------
    lr : float or schedule, default 1e-2
    lr_decay : float, default 0
    weight_decay : float, default 0
    initial_accumulator_value : float, default 0
    eps : float, default 1e-10
    """

    rule = rules.ADAGRAD


class RMSprop(Optimizer):
    r"""RMSprop (Hinton, 2012), as torch.optim.RMSprop.

    .. math::

        g_t &\leftarrow g_t + \lambda x_{t-1} \\
        v_t &= \alpha v_{t-1} + (1-\alpha) g_t^2 \\
        \bar g_t &= \alpha \bar g_{t-1} + (1-\alpha) g_t, \quad
        d_t = \sqrt{v_t - \bar g_t^2} + \epsilon \ \text{(centered)}
        \quad\text{else}\quad d_t = \sqrt{v_t} + \epsilon \\
        b_t &= \mu b_{t-1} + g_t / d_t, \quad x_t = x_{t-1} - \eta_t b_t \ (\mu > 0)
        \quad\text{else}\quad x_t = x_{t-1} - \eta_t g_t / d_t

    Parameters
    ----------
    lr : float or schedule, default 1e-2
    alpha : float in [0, 1], default 0.99
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum : float, default 0
    centered : bool, default False
    """

    rule = rules.RMSPROP


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler, 2012), as torch.optim.Adadelta (note torch's extra ``lr``, default 1).

    .. math::

        g_t &\leftarrow g_t + \lambda x_{t-1} \\
        v_t &= \rho v_{t-1} + (1-\rho) g_t^2 \\
        \Delta x_t &= \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\, g_t \\
        u_t &= \rho u_{t-1} + (1-\rho) \Delta x_t^2 \\
        x_t &= x_{t-1} - \eta_t \Delta x_t

    Parameters
    ----------
    lr : float or schedule, default 1.0
    rho : float in [0, 1], default 0.9
    eps : float, default 1e-6
    weight_decay : float, default 0
    """

    rule = rules.ADADELTA


_ADAM_MATH = r"""
    .. math::

        g_t &\leftarrow g_t + \lambda x_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        v_t &= \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \ \text{(amsgrad)} \quad\text{else}\quad
        \hat v_t = v_t \\
        x_t &= x_{t-1} - \frac{\eta_t}{1-\beta_1^t}\,
               \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1-\beta_2^t} + \epsilon}
"""


class Adam(Optimizer):
    __doc__ = r"""Adam (Kingma & Ba, 2014), as torch.optim.Adam, with optional AMSGrad.
    """ + _ADAM_MATH + r"""
    Kingma & Ba's Algorithm 1 adds :math:`\epsilon` to the square root of the *bias-corrected*
    second moment, :math:`x_t = x_{t-1} - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)` with
    :math:`\hat m_t = m_t/(1-\beta_1^t)`, :math:`\hat v_t = v_t/(1-\beta_2^t)`, which is the
    formula above. Their "more efficient" ordering (section 2) instead uses
    :math:`\eta_t = \eta \sqrt{1-\beta_2^t}/(1-\beta_1^t)` and
    :math:`x_t = x_{t-1} - \eta_t m_t/(\sqrt{v_t} + \hat\epsilon)`, i.e.
    :math:`\hat\epsilon = \epsilon \sqrt{1-\beta_2^t}`; the two differ only in how :math:`\epsilon`
    enters. AMSGrad (Reddi, Kale & Kumar, 2018) keeps the maximum of the raw :math:`v_t`, as torch
    does.

    Parameters
    ----------
    lr : float or schedule, default 1e-3
    beta1, beta2 : float in [0, 1), default 0.9, 0.999
    eps : float, default 1e-8
    weight_decay : float, default 0 (L2 penalty added to the gradient)
    amsgrad : bool, default False
    """

    rule = rules.ADAM


class AdamW(Optimizer):
    __doc__ = r"""AdamW (Loshchilov & Hutter, 2019), as torch.optim.AdamW.

    The weight decay is decoupled from the gradient: first
    :math:`x_{t-1} \leftarrow (1 - \eta_t \lambda)\, x_{t-1}`, then Adam's step with no L2 term:
    """ + _ADAM_MATH.replace(r"g_t &\leftarrow g_t + \lambda x_{t-1} \\", "") + r"""
    Parameters
    ----------
    lr : float or schedule, default 1e-3
    beta1, beta2 : float in [0, 1), default 0.9, 0.999
    eps : float, default 1e-8
    weight_decay : float, default 1e-2 (decoupled)
    amsgrad : bool, default False
    """

    rule = rules.ADAMW


class Adamax(Optimizer):
    r"""AdaMax, Adam with the infinity norm (Kingma & Ba, 2014, Algorithm 2), as torch.optim.Adamax.

    .. math::

        g_t &\leftarrow g_t + \lambda x_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        u_t &= \max(\beta_2 u_{t-1}, |g_t| + \epsilon) \\
        x_t &= x_{t-1} - \frac{\eta_t}{1-\beta_1^t} \frac{m_t}{u_t}

    The paper's Algorithm 2 has no :math:`\epsilon`: :math:`u_t = \max(\beta_2 u_{t-1}, |g_t|)`;
    torch (and this class) add it inside the max so that :math:`u_t > 0`.

    Parameters
    ----------
    lr : float or schedule, default 2e-3
    beta1, beta2 : float in [0, 1), default 0.9, 0.999
    eps : float, default 1e-8
    weight_decay : float, default 0
    """

    rule = rules.ADAMAX


class NAdam(Optimizer):
    r"""NAdam, Adam with Nesterov momentum (Dozat, 2016), as torch.optim.NAdam.

    With :math:`\mu_t = \beta_1 (1 - \tfrac12 0.96^{t\psi})`, :math:`\psi` = ``momentum_decay``:

    .. math::

        g_t &\leftarrow g_t + \lambda x_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        d_t &= \sqrt{v_t / (1-\beta_2^t)} + \epsilon \\
        x_t &= x_{t-1} - \eta_t \frac{1-\mu_t}{1-\prod_{i\le t}\mu_i} \frac{g_t}{d_t}
                       - \eta_t \frac{\mu_{t+1}}{1-\prod_{i\le t+1}\mu_i} \frac{m_t}{d_t}

    Parameters
    ----------
    lr : float or schedule, default 2e-3
    beta1, beta2 : float in [0, 1), default 0.9, 0.999
    eps : float, default 1e-8
    weight_decay : float, default 0
    momentum_decay : float, default 4e-3
    """

    rule = rules.NADAM


class RAdam(Optimizer):
    r"""RAdam, rectified Adam (Liu et al., 2020), as torch.optim.RAdam.

    With :math:`\rho_\infty = 2/(1-\beta_2) - 1` and
    :math:`\rho_t = \rho_\infty - 2 t \beta_2^t / (1-\beta_2^t)`:

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad \hat m_t = m_t / (1-\beta_1^t) \\
        x_t &= x_{t-1} - \eta_t \hat m_t\, r_t \frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t} + \epsilon}
        \ \text{if } \rho_t > 5, \quad\text{else}\quad x_t = x_{t-1} - \eta_t \hat m_t \\
        r_t &= \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

    (after :math:`g_t \leftarrow g_t + \lambda x_{t-1}`).

    Parameters
    ----------
    lr : float or schedule, default 1e-3
    beta1, beta2 : float in [0, 1), default 0.9, 0.999
    eps : float, default 1e-8
    weight_decay : float, default 0
    """

    rule = rules.RADAM


#: The optimizer class of each method name; "amsgrad" is Adam with amsgrad=True.
OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adadelta": Adadelta,
              "adam": Adam, "adamw": AdamW, "adamax": Adamax, "nadam": NAdam, "radam": RAdam}
