"""Terms that depend on the points alone, computed once per point set.

A residual such as u_xx + u_yy - f(x) needs f at the same collocation points on every one of a
run's thousands of loss evaluations; the training points change only when they are resampled.
`at_points` memoises a problem's method of the points: on the default Poisson run the source
term's three sines and cosines were recomputed 2,175 times.

    class MyProblem(PDEProblem):
        @at_points
        def source(self, x):          # (N, 2) -> (N, 1)
            return torch.sin(PI * x[:, :1]) * ...

A value is reused only for the very tensor it was computed from (the same object, unchanged
since: torch's version counter), never for equal values in another tensor, so a resampled or
edited point set is always computed afresh. Points that require grad (derivatives with respect
to x through nested autograd) and points inside a torch.func transform are never cached, since
the value would need their graph, and neither is a value that requires grad (a source with
trained unknowns in it). A few recent point sets are kept per problem (training and test points
alternate), outside the problem's own attributes (it still copies and pickles as before).
"""

from __future__ import annotations

import functools
import weakref
from collections import OrderedDict
from collections.abc import Callable

from torch import Tensor

from kanpde.nn.kernel import under_functorch

KEEP = 4  # point sets remembered per method and problem (training, test, grid samples, ...)
_MEMOS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # problem -> {method: entries}


def at_points(method: Callable[[object, Tensor], Tensor]) -> Callable[[object, Tensor], Tensor]:
    """Memoise `method(self, x)` per point tensor x (module docstring); the value must depend
    on x and on the problem's fixed settings only."""
    name = method.__name__

    @functools.wraps(method)
    def cached(self, x: Tensor) -> Tensor:
        if x.requires_grad or under_functorch():
            return method(self, x)
        memo = _MEMOS.setdefault(self, {}).setdefault(name, OrderedDict())
        key = id(x)
        hit = memo.get(key)
        if hit is not None and hit[0]() is x and hit[1] == x._version:
            memo.move_to_end(key)
            return hit[2]
        value = method(self, x)
        if value.requires_grad:  # it depends on trained parameters after all: nothing to reuse
            return value
        memo[key] = (weakref.ref(x), x._version, value)
        memo.move_to_end(key)
        while len(memo) > KEEP:
            memo.popitem(last=False)
        return value

    return cached
