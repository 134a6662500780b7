"""Parameter groups over the flat vector: torch's param groups, for one parameter vector.

A torch user hands an optimizer a list of dicts, each with its ``"params"`` and the options that
differ from the optimizer's (``[{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]``).
adamnb's parameters are one flat vector, so a group's ``"params"`` are **views** of it, each one of
torch's tensors:

* ``slice(start, stop)`` or ``(start, stop)``: the elements ``x[start:stop]``;
* ``(start, stop, (rows, cols))`` or ``(start, stop, (rows, cols), "F")``, or a :class:`View`:
  the same elements as a ``rows x cols`` matrix, ``x[start:stop].reshape((rows, cols),
  order=order)``. ``"F"`` (column order) is how :class:`adamnb.nn.MLP` stores torch's
  ``nn.Linear`` weight ``(fan_out, fan_in)`` (:meth:`adamnb.nn.MLP.param_groups`).

``"params"`` is one view or a list of them. The rules follow torch's:

* every element of the vector belongs to exactly one view of one group (give a part that must
  not move ``lr=0``);
* a group's options are the optimizer's (the class's arguments, ``minimize``'s options) updated
  with the group's own keys; a schedule as ``lr`` steps once per step in each group;
* each view keeps its own state, as each of torch's tensors does, and the sums some rules take
  inside a step are taken per view: LAMB's trust ratio and NovoGrad's gradient norm per view
  (optax: per leaf), Adafactor's RMS clipping per view (torch: per tensor). A view with a 2-D
  shape is updated as a matrix by the rules that have a matrix step
  (:class:`adamnb.optim.MatrixStep`): Adafactor's factored second moments, Muon;
* Muon updates the groups whose views are all matrices; any other group runs the rule named by
  its ``"method"`` key (default ``"adamw"``, as torch recommends), with that rule's defaults
  updated with the group's own options only (the Muon options do not carry over);
* optax's Prodigy sums over the whole parameter tree: it runs without groups.

The drivers and the classes take a step as one kernel call (or one matrix step) per view, with
the scalars of the view's group.
"""

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from adamnb.optim.schedules import as_schedule, fresh_copy

__all__ = ["View", "as_view", "parse_groups", "check_specs", "GroupSpec", "Layout",
           "GroupedStream"]


class View(NamedTuple):
    """One of a group's views of the flat vector: ``x[start:stop]``, as a ``shape`` matrix in
    ``order`` (``"C"`` rows, ``"F"`` columns) when ``shape`` is given."""

    start: int
    stop: int
    shape: tuple = None
    order: str = "C"


class GroupSpec(NamedTuple):
    """A group as given, checked: its views, its own options, its method (None: the
    optimizer's)."""

    views: tuple
    options: dict
    method: str = None


def _whole(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def as_view(entry, where="a group's params"):
    """A :class:`View` from ``slice(start, stop)``, ``(start, stop[, shape[, order]])`` or a
    View (bounds not yet checked against the vector's length).

    Raises
    ------
    TypeError
        ``entry`` is none of these.
    ValueError
        A slice with a step, bounds that are not integers, a shape that is not two positive
        integers, an order other than "C" and "F".
    """
    if isinstance(entry, slice):
        if entry.step not in (None, 1):
            raise ValueError(f"{where}: {entry!r} has a step; a view is a contiguous slice")
        entry = (entry.start, entry.stop)
    if not isinstance(entry, (tuple, list)) or not 2 <= len(entry) <= 4:
        raise TypeError(f"{where}: {entry!r} is not a view; give slice(start, stop), "
                        "(start, stop), (start, stop, (rows, cols)) or (start, stop, (rows, "
                        "cols), 'F')")
    start, stop = entry[0], entry[1]
    shape = entry[2] if len(entry) > 2 else None
    order = entry[3] if len(entry) > 3 else "C"
    for name, value in (("start", start), ("stop", stop)):
        if value is not None and not _whole(value):
            raise ValueError(f"{where}: {name} {value!r} of {entry!r} is not an integer")
    if shape is not None:
        if not (isinstance(shape, (tuple, list)) and len(shape) == 2
                and all(_whole(s) and s >= 1 for s in shape)):
            raise ValueError(f"{where}: shape {shape!r} of {entry!r} is not two positive "
                             "integers (rows, cols)")
        shape = (int(shape[0]), int(shape[1]))
    if order not in ("C", "F"):
        raise ValueError(f"{where}: order {order!r} of {entry!r} is not 'C' or 'F'")
    return View(None if start is None else int(start), None if stop is None else int(stop),
                shape, order)


def parse_groups(groups):
    """Check a list of torch-style group dicts: a tuple of :class:`GroupSpec` (views not yet
    checked against the vector's length; options not yet against the rule).

    Raises
    ------
    TypeError
        ``groups`` is not a list of dicts, or a view is not a view.
    ValueError
        A group without ``"params"`` or with no view, a malformed view, a ``"method"`` that is
        not a string.
    """
    if isinstance(groups, dict) or not isinstance(groups, (list, tuple)):
        raise TypeError(f"groups must be a list of dicts, each with 'params', got "
                        f"{type(groups).__name__}")
    if not groups:
        raise ValueError("groups is empty; give at least one group, or none at all")
    specs = []
    for number, group in enumerate(groups):
        where = f"group {number}"
        if not isinstance(group, dict):
            raise TypeError(f"{where} must be a dict with 'params', got {type(group).__name__}")
        if "params" not in group:
            raise ValueError(f"{where} has no 'params' (its views of the vector)")
        params = group["params"]
        single = isinstance(params, (slice, View)) or (
            isinstance(params, tuple) and len(params) >= 2 and
            all(item is None or _whole(item) for item in params[:2]))
        entries = [params] if single else list(params) if isinstance(params, (list, tuple)) \
            else [params]
        if not entries:
            raise ValueError(f"{where} has no views in 'params'")
        views = tuple(as_view(entry, f"{where}'s params") for entry in entries)
        method = group.get("method")
        if method is not None and not isinstance(method, str):
            raise ValueError(f"{where}: method {method!r} is not a method name")
        options = {key: value for key, value in group.items() if key not in ("params", "method")}
        specs.append(GroupSpec(views, options, method))
    return tuple(specs)


def _resolve(rule, options, spec, number):
    """The rule of group ``number`` and its validated options."""
    from adamnb.optim.rules import get_rule  # the registry's rules import this module's users

    group_rule = rule
    if rule.element is None and not all(view.shape for view in spec.views):
        group_rule = get_rule(spec.method or rule.vector_fallback)
        if group_rule.element is None or group_rule.whole_vector:
            raise ValueError(f"group {number}: method {group_rule.name!r} cannot update views "
                             "without a 2-D shape in a group")
    elif spec.method is not None and spec.method != rule.name:
        raise ValueError(f"group {number} names method {spec.method!r}: only the groups of a "
                         "matrix method (Muon) without matrices choose their method")
    names = {hp.name for hp in group_rule.hyperparameters} | set(group_rule.fixed)
    unknown = sorted(set(spec.options) - names)
    if unknown:
        raise ValueError(f"group {number} has unknown option(s) {', '.join(unknown)} for method "
                         f"{group_rule.name!r}; valid options are: {', '.join(sorted(names))}")
    inherited = options if group_rule is rule else {}
    return group_rule, group_rule.validate({**inherited, **spec.options})


def check_specs(rule, options, specs):
    """Check groups against ``rule`` and its validated ``options`` before the vector's length
    is known (each group's rule and options; see :class:`Layout` for the errors)."""
    if specs is None:
        if rule.element is None:
            raise ValueError(f"method {rule.name!r} updates matrices: give groups whose views "
                             "have a 2-D shape (e.g. adamnb.nn.MLP.param_groups()); see "
                             "adamnb.optim.groups")
        return
    if rule.whole_vector:
        raise ValueError(f"method {rule.name!r} sums over every parameter at once "
                         f"({rule.library}): it runs without groups")
    if rule.element is None and not any(view.shape for spec in specs for view in spec.views):
        # as torch's Muon refuses parameters that are not matrices: nothing would use the rule
        raise ValueError(f"method {rule.name!r} updates matrices, and no group has a view with a "
                         "2-D shape: give the matrices their shapes (e.g. "
                         "adamnb.nn.MLP.param_groups()), or use another method")
    for number, spec in enumerate(specs):
        _resolve(rule, options, spec, number)


@dataclass
class Group:
    """A resolved group: the rule that updates it, its validated options and schedule."""

    rule: object
    options: dict
    schedule: object


@dataclass
class Piece:
    """A resolved view: ``x[start:stop]`` of group ``group``; ``matrix`` when the group's rule
    updates it with its matrix step (then ``shape`` and ``order`` say how)."""

    start: int
    stop: int
    shape: tuple
    order: str
    group: int
    matrix: bool

    @property
    def size(self):
        return self.stop - self.start


class Layout:
    """Groups resolved for a vector of ``n`` elements: the groups (rule, options, schedule) and
    the pieces (one per view, in the order given).

    Without groups the layout has one group, the optimizer's rule and options, and one piece,
    the whole vector, which is how every driver and class runs an ungrouped step.

    Parameters
    ----------
    rule : UpdateRule
        The optimizer's (method's) rule.
    options : dict
        Its validated options.
    specs : tuple of GroupSpec, or None
        From :func:`parse_groups`.
    n : int
        Length of the vector.
    schedule : callable
        The schedule of ``options["lr"]`` (used as is for groups that keep that ``lr``).
    copy_schedules : bool
        Run each group's stateful schedule on a copy (``minimize``: the same call gives the same
        run twice).

    Raises
    ------
    ValueError
        Views outside the vector, overlapping or leaving elements out; a shape whose size is not
        the view's; a group option unknown to the group's rule or invalid; a ``method`` key where
        the rule takes none; a rule that sums over the whole vector (Prodigy) with groups; a rule
        that updates only matrices (Muon) without groups.
    """

    def __init__(self, rule, options, specs, n, schedule, copy_schedules=False):
        self.rule, self.n, self.grouped = rule, int(n), specs is not None
        check_specs(rule, options, specs)
        if specs is None:
            self.groups = [Group(rule, options, schedule)]
            self.pieces = [Piece(0, self.n, None, "C", 0, False)]
            return
        self.groups, self.pieces = [], []
        for number, spec in enumerate(specs):
            views = [self._bounded(view, number) for view in spec.views]
            group_rule, group_options = _resolve(rule, options, spec, number)
            if group_rule is rule and "lr" not in spec.options:
                group_schedule = schedule
            else:
                group_schedule = as_schedule(group_options["lr"])
                if copy_schedules:
                    group_schedule = fresh_copy(group_schedule)
            self.groups.append(Group(group_rule, group_options, group_schedule))
            for view in views:
                matrix = group_rule.matrix is not None and view.shape is not None
                self.pieces.append(Piece(view.start, view.stop, view.shape, view.order, number,
                                         matrix))
        self._check_cover()

    def _bounded(self, view, number):
        start = 0 if view.start is None else view.start
        stop = self.n if view.stop is None else view.stop
        if not 0 <= start < stop <= self.n:
            raise ValueError(f"group {number}: view {tuple(view)!r} is not a non-empty part of "
                             f"the vector's {self.n} elements")
        if view.shape is not None and view.shape[0] * view.shape[1] != stop - start:
            raise ValueError(f"group {number}: view {tuple(view)!r} has {stop - start} elements, "
                             f"its shape {view.shape} has {view.shape[0] * view.shape[1]}")
        return View(start, stop, view.shape, view.order)

    def _check_cover(self):
        count = np.zeros(self.n, dtype=np.int64)
        for piece in self.pieces:
            count[piece.start:piece.stop] += 1
        if (count > 1).any():
            first = int(np.argmax(count > 1))
            raise ValueError(f"groups overlap: element {first} is in two views")
        if (count == 0).any():
            first = int(np.argmax(count == 0))
            last = first + int(np.argmax(count[first:] != 0)) - 1 if count[first:].any() \
                else self.n - 1
            raise ValueError(f"elements {first}..{last} of the vector are in no group; give "
                             "every element a group (lr=0 keeps a part fixed)")

    # --- per-group scalars --------------------------------------------------------------------

    def stream(self, dtype, maxiter=None, scalars=None, step=0):
        """The per-step scalars of every group (:class:`GroupedStream`); ``scalars`` is the
        list of each group's host scalars after step ``step``."""
        return GroupedStream([
            group.rule.stream(group.options, group.schedule, dtype, maxiter,
                              None if scalars is None else scalars[k], step)
            for k, group in enumerate(self.groups)])

    def schedules(self):
        """Each group's schedule, once (groups that share one share its steps)."""
        seen = []
        for group in self.groups:
            if not any(group.schedule is other for other in seen):
                seen.append(group.schedule)
        return seen

    # --- state --------------------------------------------------------------------------------

    def new_states(self, dtype):
        """Each piece's state at step 0 on the host: ``(state, carry)`` per piece; ``state`` is
        the rule's ``(rows, size)`` state vectors, or for a matrix piece the tuple of its matrix
        step's slots."""
        states = []
        for piece in self.pieces:
            group = self.groups[piece.group]
            if piece.matrix:
                shapes = group.rule.matrix.shapes(group.options, piece.shape)
                state = tuple(np.zeros(shape, dtype=dtype) for shape in shapes)
            else:
                state = group.rule.state_vectors(group.options, piece.size, dtype)
            states.append((state, group.rule.carry_vector(group.options, dtype)))
        return states

    def slots(self, index):
        """The names of piece ``index``'s state arrays, in order (for checkpoints)."""
        piece = self.pieces[index]
        group = self.groups[piece.group]
        if piece.matrix:
            return group.rule.matrix.slots
        return group.rule.slots[:group.rule.rows(group.options)]

    def view(self, x, index):
        """Piece ``index`` of the vector ``x``: ``x[start:stop]``."""
        piece = self.pieces[index]
        # len(shape) - 1, not -1: numba's simulated device arrays take no negative index there
        if piece.start == 0 and piece.stop == x.shape[len(x.shape) - 1]:
            return x
        return x[..., piece.start:piece.stop]

    def matrix(self, x, index):
        """Piece ``index`` of the host vector ``x`` as its matrix (a view)."""
        piece = self.pieces[index]
        return self.view(x, index).reshape(piece.shape, order=piece.order)

    def rows(self, index):
        """The rows of a :class:`GroupedStream` table that hold piece ``index``'s scalars."""
        return self._row_slices[self.pieces[index].group]

    @property
    def _row_slices(self):
        slices, start = [], 0
        for group in self.groups:
            slices.append(slice(start, start + group.rule.n_coefficients))
            start += group.rule.n_coefficients
        return slices

    def outputs(self, x, states):
        """The rules' extra results (ASGD's average, schedule-free AdamW's evaluation point)
        for the whole vector, each piece's computed from its view and state (host arrays)."""
        if len(self.pieces) == 1:
            rule, options = self.groups[0].rule, self.groups[0].options
            return {} if rule.outputs is None else rule.outputs(options, x, states[0][0])
        parts = []
        for index, piece in enumerate(self.pieces):
            group = self.groups[piece.group]
            if group.rule.outputs is None or piece.matrix:
                parts.append({})
            else:
                parts.append(group.rule.outputs(group.options, self.view(x, index),
                                                states[index][0]))
        names = set().union(*parts)
        result = {}
        for name in sorted(names):
            whole = np.array(x, copy=True) if name == "x" else np.full_like(x, np.nan)
            for index, part in enumerate(parts):
                if name in part:
                    self.view(whole, index)[...] = part[name]
            result[name] = whole
        return result


class GroupedStream:
    """The per-step scalars of every group of a :class:`Layout`, step after step: a table whose
    rows are the groups' scalars one group after the other (:meth:`Layout.rows`), with the
    interface of :class:`adamnb.optim.CoefficientStream`."""

    def __init__(self, streams):
        self.streams = streams
        self.dtype = streams[0].dtype
        self.pure = all(stream.pure for stream in streams)

    @property
    def scalars(self):
        """Each group's host scalars after the last step computed."""
        return [dict(stream.scalars) for stream in self.streams]

    def columns(self, t, block):
        """The scalars of steps ``t, t+1, ...`` (at most ``block``; one for a callable schedule
        in any group), as the columns of an array of ``sum(K)`` rows."""
        block = block if self.pure else 1
        tables = [stream.columns(t, block) for stream in self.streams]
        return tables[0] if len(tables) == 1 else np.concatenate(tables)
