"""The one place that builds numba's compilation options, and the disk cache's bookkeeping.

Every CPU kernel in adamnb is compiled with these options so that a change of policy (caching,
error model, fast-math) is made once.

* ``cache=True``: compiled machine code is stored next to the sources (numba's on-disk cache), so a
  second process starts in milliseconds rather than recompiling.
* ``error_model="numpy"``: division by zero yields inf/NaN as in NumPy instead of raising, so a run
  that blows up is reported through ``OptimizeResult.status`` rather than an exception deep inside a
  kernel.
* no ``fastmath``: re-association and contraction would make the vectorised body and the scalar
  remainder of a loop round differently, and then the serial and parallel kernels (which split the
  array at different places) would not give the same bits. IEEE arithmetic keeps them identical.
  The one exception is the opt-in fast mode of the compiled loops (:data:`FAST_MATH`).

Caching generated kernels
    A kernel built around a rule's element (a closure) is cached by numba under a key made of its
    bytecode and its closure's contents, pickled; the element itself pickles *by reference* (its
    module and name), so an edit of the element's source would not change the key and numba would
    load the old machine code. Every cached closure therefore also captures
    :func:`source_stamp` of the modules whose code it compiles in (the element's, the shared
    per-element code's, a built-in objective's): an edit of any of them changes the key, and the
    kernel is compiled afresh. numba checks the kernel's own source file itself.

    :func:`ready` asks whether a dispatcher can run given arguments without compiling: already
    compiled in this process, or loadable from the disk cache (which it then loads). The drivers
    use it to choose between a compiled loop and the host loop by expected cost.
"""

import hashlib
import inspect
import os

import numba

JIT_OPTIONS = {"cache": True, "error_model": "numpy", "nogil": True}

#: numba's fast-math flags of the opt-in fast mode (``options={"fast": True}``): contraction into
#: fused multiply-adds, reciprocals in place of divisions, no signed zeros. Not ``nnan``/``ninf``
#: (the drivers must still see NaN and inf to stop a diverging run, status 3), not ``reassoc``
#: (sums keep their order).
FAST_MATH = frozenset({"contract", "arcp", "nsz"})


def jit(function=None, **overrides):
    """``numba.njit`` with the package's options; keyword overrides win."""
    options = {**JIT_OPTIONS, **overrides}
    if function is None:
        return numba.njit(**options)
    return numba.njit(**options)(function)


def elementwise(function):
    """Mark a per-element update as callable from any numba target (CPU ``njit`` or CUDA).

    ``register_jitable`` keeps ``function`` a plain Python function that numba compiles inline
    wherever a kernel calls it, which lets one definition of each update rule serve every target. It
    also pickles by reference, which keeps numba's on-disk cache of the kernels built around it valid
    across processes.
    """
    return numba.extending.register_jitable(inline="always")(function)


def generated_element(module, name, source, **namespace):
    """The :func:`elementwise` function ``name`` defined by the generated ``source`` (globals:
    ``namespace``), published as attribute ``name`` of ``module`` (a module object) and made
    once: a module attribute pickles by reference, so a cached kernel whose closure holds it
    keeps one disk-cache key across processes. Source is generated where numba needs code
    spelled out (a tuple's items, a call's arguments), which it cannot loop over.

    A second request for ``name`` with another source or other objects in its namespace (a
    rule copied with ``dataclasses.replace`` keeps its name but may bring another ``reduce``)
    gets a function of its own, not published: it pickles by value, as a closure does."""
    published = getattr(module, name, None)
    if published is not None and published.__adamnb_source__ == (source, namespace):
        return published
    exec(compile(source, f"<adamnb {name}>", "exec"), namespace)  # noqa: S102
    function = namespace[name]
    function.__adamnb_source__ = (source, {key: value for key, value in namespace.items()
                                           if key != name and key != "__builtins__"})
    if published is None:
        function.__module__, function.__qualname__ = module.__name__, name
        setattr(module, name, function)
    return elementwise(function)


def overload_inline(function, prefer_literal=False):
    """Decorator: how numba compiles ``function`` (a Python stand-in) for each argument type.

    numba's ``overload``, with the implementation that the decorated typing function returns
    spliced into the caller's IR, as :func:`elementwise` functions are, so that a check or a
    conversion decided at compile time leaves no call behind. With ``prefer_literal`` the typing
    function sees constant arguments as literal types first, so that their values can become
    constants of the implementation (a length to compare with, a message to raise).
    """
    return numba.extending.overload(function, inline="always", prefer_literal=prefer_literal)


_file_stamps = {}


def _file_stamp(path):
    status = os.stat(path)
    key = (status.st_mtime_ns, status.st_size)
    if _file_stamps.get(path, (None,))[0] != key:
        with open(path, "rb") as source:
            _file_stamps[path] = (key, hashlib.sha256(source.read()).hexdigest()[:16])
    return _file_stamps[path][1]


def source_stamp(*objects):
    """A fingerprint of the source files that define ``objects`` (functions, numba dispatchers,
    modules): a string that changes whenever one of those files changes.

    A kernel that captures it in its closure gets a new disk-cache key when the code it inlines
    changes (see the module notes). Objects without a source file contribute their name.
    """
    parts = []
    for obj in objects:
        obj = getattr(obj, "py_func", obj)
        try:
            path = inspect.getsourcefile(obj)
        except TypeError:
            path = None
        parts.append(_file_stamp(path) if path and os.path.exists(path)
                     else getattr(obj, "__qualname__", repr(obj)))
    return "-".join(sorted(set(parts)))


def _index_stamp(path):
    """What identifies a version of a cache index file: (modification time, size), or the
    string "absent"; None when it cannot be read."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return "absent"
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


def ready(dispatcher, args):
    """Whether ``dispatcher`` can run ``args`` without compiling: True if an overload for their
    types is compiled in this process or can be loaded from numba's disk cache (it is then loaded
    and registered, as a call would); False otherwise, or when the question cannot be answered
    (numba internals this relies on are missing), and nothing is compiled either way. A miss is
    remembered until the cache's index file changes (a probe reads the whole index).
    """
    try:
        signature = tuple(dispatcher.typeof_pyval(arg) for arg in args)
        if signature in dispatcher.overloads:
            return True
        cache = getattr(dispatcher, "_cache", None)
        if cache is None or not dispatcher._can_compile:
            return False
        # A miss costs milliseconds (numba reads and unpickles the whole index, one for every
        # variant of a generated kernel); it stays a miss until the index file changes.
        index = _index_stamp(cache._cache_file._index_path)
        misses = dispatcher.__dict__.setdefault("_adamnb_cache_misses", {})
        if index is not None and misses.get(signature) == index:
            return False
        from numba.core.compiler_lock import global_compiler_lock
        with global_compiler_lock:
            if signature in dispatcher.overloads:
                return True
            result = cache.load_overload(signature, dispatcher.targetctx)
            if result is None:
                misses[signature] = index
                return False
            dispatcher._cache_hits[signature] += 1
            if not result.objectmode:
                dispatcher.targetctx.insert_user_function(result.entry_point, result.fndesc,
                                                          [result.library])
            dispatcher.add_overload(result)
            return True
    except Exception:  # noqa: BLE001 -- a probe: any failure means "not ready", never an error
        return False
