"""Input features in front of a network: Fourier features that make it exactly periodic.

    u(x) = N(e(x)),  e(x) = x with each periodic input x_j replaced, in place, by
    cos(w_j x_j), sin(w_j x_j), cos(2 w_j x_j), sin(2 w_j x_j), ..., cos(M w_j x_j), sin(M w_j x_j),
    w_j = 2 pi / L_j,

so u(x + L_j e_j) = u(x) for any network N, by construction rather than by a penalty (the
"periodic layer" of Dong & Ni 2021, J. Comput. Phys. 435, 110242, with M harmonics; DeepXDE's
`apply_feature_transform` does the same with autograd derivatives). `PeriodicFeatures.push`
carries a jet through e by the chain rule, de = e'(x_j) dx_j and
d2e_p = e''(x_j) (dx_j^T Q_p dx_j) + e'(x_j) d2x_jp, then hands it to the network's own `push`,
so the wrapped KAN, MLP or ChebyKAN stays on its forward-propagated fast path.

Coordinates: the wrapper sees what the network sees. A problem scales its bounding box onto
[-1, 1]^d before the network (`kanpde.pde.solution`), so a variable periodic over its whole
interval has period 2.0 there.

The class is named for what it does, not `Periodic`: that is the periodic boundary condition
(`kanpde.pde.conditions.Periodic`), which these features make hold exactly.

Configuration (`kanpde.registry.build_model`): a model option
`periodic: {period: {<input>: <L>, ...}, harmonics: M}`, <input> an input index (or a variable
name when the builder is given the problem's variables); `width` stays the problem's
[in, ..., out], the network inside gets the embedded input size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral

import torch
from torch import Tensor, nn

from kanpde.nn.derivatives import Jet, autograd_jet, input_jet, quadratic
from kanpde.validate import ConfigError, check_int, check_number, check_width

_IDENTITY, _COS, _SIN = 0, 1, 2


def embedded_dim(in_dim: int, n_periodic: int, harmonics: int) -> int:
    """Inputs of the network behind the features: each periodic input becomes 2 M features."""
    return in_dim + n_periodic * (2 * harmonics - 1)


def check_period(period, in_dim: int | None = None, variables: Sequence[str] | None = None,
                 name: str = "period") -> dict[int, float]:
    """{input index: period} from a mapping whose keys are indices (ints or digit strings) or,
    when `variables` is given, variable names; ConfigError naming `name` otherwise.

    Args:
        period: e.g. {0: 2.0}, {"0": 2.0} or {"x": 2.0}.
        in_dim: number of inputs, to check the indices against (None: not checked).
        variables: the inputs' names, in order.
        name: the setting's name in messages.

    Returns:
        {j: L_j}, sorted by j, every L_j > 0 and finite.
    """
    if not isinstance(period, Mapping) or not period:
        raise ConfigError(f"{name} must be a non-empty mapping {{input: period}}, got {period!r}")
    out = {}
    for key, value in period.items():
        if variables is not None and key in variables:
            j = list(variables).index(key)
        elif isinstance(key, Integral) and not isinstance(key, bool):
            j = int(key)
        elif isinstance(key, str) and key.strip().isdigit():
            j = int(key)
        else:
            known = f"an input index or one of {', '.join(variables)}" if variables else "an input index"
            raise ConfigError(f"{name} key {key!r} is not {known}")
        if j < 0 or in_dim is not None and j >= in_dim:
            raise ConfigError(f"{name} key {key!r} is not an input of a model with {in_dim} inputs")
        if j in out:
            raise ConfigError(f"{name} names input {j} twice")
        lj = check_number(value, f"{name}[{key!r}]", positive=True)
        if not math.isfinite(lj):
            raise ConfigError(f"{name}[{key!r}] must be finite, got {value!r}")
        out[j] = lj
    return dict(sorted(out.items()))


def periodic_option(spec, width, variables: Sequence[str] | None = None) -> tuple[dict[int, float], int, list[int]]:
    """Read the `periodic` model option (see the module docstring).

    Args:
        spec: {"period": {input: L, ...}, "harmonics": M (default 1)}.
        width: the model's outer width [in, ..., out].
        variables: the inputs' names, so that `period` may name them (None: indices only).

    Returns:
        (period {index: L}, harmonics, the wrapped network's width).
    """
    if not isinstance(spec, Mapping) or set(spec) - {"period", "harmonics"} or "period" not in spec:
        raise ConfigError(f"model.periodic must be {{period: {{input: L}}, harmonics: M}}, got {spec!r}")
    width = check_width(width, "model.width")
    harmonics = check_int(spec.get("harmonics", 1), "model.periodic.harmonics", minimum=1)
    period = check_period(spec["period"], width[0], variables, "model.periodic.period")
    return period, harmonics, [embedded_dim(width[0], len(period), harmonics), *width[1:]]


@dataclass
class PeriodicConfig:
    """What a `PeriodicFeatures` model is: `width` is the outer one, [in, ..., out] of the whole
    model (the network inside has `embedded_dim` inputs); `period` {input index: L}; `harmonics` M."""

    width: list[int] = field(default_factory=lambda: [2, 1])
    period: dict[int, float] = field(default_factory=dict)
    harmonics: int = 1


class PeriodicFeatures(nn.Module):
    """A network behind Fourier features of its periodic inputs; see the module docstring.

    Args:
        model: the network N, (N, embedded_dim) -> (N, m), with `config.width` (a kanpde model);
            its `push`, if it has one, gives `PeriodicFeatures.push`.
        period: {input index j: period L_j > 0}, in the model's input coordinates.
        harmonics: M >= 1, frequencies w_j, 2 w_j, ..., M w_j per periodic input.

    Attributes:
        model: the wrapped network.
        config: `PeriodicConfig`, with the outer width.
        source: buffer (E,) long, the input each embedded feature is made from (E = embedded_dim).
        omega: buffer (E,) float64, the feature's angular frequency (0 for a passed-through input).
        kind: buffer (E,) long, 0 passed through, 1 cosine, 2 sine.
    """

    def __init__(self, model: nn.Module, period: Mapping[int, float], harmonics: int = 1):
        super().__init__()
        if not isinstance(model, nn.Module) or not hasattr(getattr(model, "config", None), "width"):
            raise ConfigError(f"PeriodicFeatures wraps a kanpde model (with config.width), "
                              f"got {type(model).__name__}")
        harmonics = check_int(harmonics, "periodic.harmonics", minimum=1)
        inner = check_width(model.config.width, "model.width")
        n_per = len(period) if isinstance(period, Mapping) else 0
        in_dim = inner[0] - n_per * (2 * harmonics - 1)
        if in_dim < n_per:
            raise ConfigError(f"a network with {inner[0]} inputs cannot take {n_per} periodic inputs "
                              f"with {harmonics} harmonics ({2 * harmonics} features each)")
        period = check_period(period, in_dim, name="periodic.period")
        self.model = model
        self.config = PeriodicConfig([in_dim, *inner[1:]], period, harmonics)
        source, omega, kind = [], [], []
        for j in range(in_dim):
            if j not in period:
                source.append(j)
                omega.append(0.0)
                kind.append(_IDENTITY)
                continue
            for m in range(1, harmonics + 1):
                w = 2 * math.pi * m / period[j]
                source += [j, j]
                omega += [w, w]
                kind += [_COS, _SIN]
        # Derived from the config, so not saved (persistent=False): the state_dict is the network's.
        self.register_buffer("source", torch.tensor(source, dtype=torch.long), persistent=False)
        self.register_buffer("omega", torch.tensor(omega, dtype=torch.float64), persistent=False)
        self.register_buffer("kind", torch.tensor(kind, dtype=torch.long), persistent=False)

    def _features(self, x: Tensor, derivatives: int) -> list[Tensor]:
        """e(x) and its derivatives per feature: 1 + derivatives tensors (N, E)."""
        xs = x[:, self.source]  # (N, E)
        w = self.omega.to(xs)  # (E,)
        z = xs * w
        c, s = torch.cos(z), torch.sin(z)
        ident, is_cos = self.kind == _IDENTITY, self.kind == _COS
        trig = torch.where(is_cos, c, s)
        out = [torch.where(ident, xs, trig)]
        if derivatives >= 1:
            out.append(torch.where(ident, torch.ones_like(xs), torch.where(is_cos, -w * s, w * c)))
        if derivatives >= 2:
            out.append(torch.where(ident, torch.zeros_like(xs), -(w * w) * trig))
        return out

    def embed(self, x: Tensor) -> Tensor:
        """The network's inputs e(x): (N, in) -> (N, E)."""
        return self._features(x, 0)[0]

    def embed_jet(self, h: Jet) -> Jet:
        """Push a jet of x through e.

        Args:
            h: jet with value (N, in), grad (N, in, d), second (N, in, P).

        Returns:
            Jet with value (N, E), grad (N, E, d), second (N, E, P).
        """
        p = h.second.shape[-1]
        f = self._features(h.value, 2 if p else 1)  # (N, E) each
        g = h.grad[:, self.source]  # (N, E, d)
        grad = f[1].unsqueeze(-1) * g
        if not p:
            return Jet(f[0], grad, h.second[:, self.source], h.mode)
        m2 = quadratic(h.grad, h.mode)[:, self.source]  # (N, E, P): dx_j^T Q_p dx_j
        second = f[2].unsqueeze(-1) * m2 + f[1].unsqueeze(-1) * h.second[:, self.source]
        return Jet(f[0], grad, second, h.mode)

    @property
    def fast_jet(self) -> bool:
        """Whether `jet` forward-propagates: the network does (it has `push` and, if it says,
        `fast_jet`)."""
        return hasattr(self.model, "push") and getattr(self.model, "fast_jet", True)

    def forward(self, x: Tensor) -> Tensor:
        """(N, in) -> (N, m)."""
        return self.model(self.embed(x))

    def jet(self, x: Tensor, mode: str = "laplacian") -> Jet:
        """Value, input gradient and second derivatives: (N, m), (N, m, d), (N, m, P); by nested
        autograd when the network has no fast path."""
        if not self.fast_jet:
            with torch.enable_grad():
                return autograd_jet(self, x, mode)
        return self.push(input_jet(x, mode))

    def push(self, h: Jet) -> Jet:
        """Push a jet of the inputs through the features and the network (only when `fast_jet`).

        Args:
            h: jet with value (N, in), grad (N, in, d), second (N, in, P).

        Returns:
            Jet with value (N, m), grad (N, m, d), second (N, m, P).
        """
        return self.model.push(self.embed_jet(h))

    def periodic_args(self) -> dict:
        """The `periodic` model option that rebuilds these features (`kanpde.registry.build_model`)."""
        return {"period": {str(j): lj for j, lj in self.config.period.items()},
                "harmonics": self.config.harmonics}

    def constructor_args(self) -> dict:
        """The network's arguments with the outer width and the `periodic` option: what
        `kanpde.registry.build_model` rebuilds this model from."""
        return {**self.model.constructor_args(), "width": list(self.config.width),
                "periodic": self.periodic_args()}
