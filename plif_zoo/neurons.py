"""The PLIF and LIF neurons of paper Sec. 3.3-3.4 as SpikingJelly multi-step nodes.

Charge (eq. 6, ``decay_input=True``)::

    H[t] = V[t-1] + k * (X[t] - (V[t-1] - V_reset))      k = sigmoid(w)  (PLIF)
                                                          k = 1 / tau     (LIF)

``decay_input=False`` gives ``H[t] = V[t-1] - k * (V[t-1] - V_reset) + X[t]``.
Fire: ``S[t] = Heaviside(H[t] - V_th)`` with Heaviside(0) = 1. Reset: hard
``V[t] = H[t] * (1 - S[t]) + V_reset * S[t]`` or soft (``v_reset=None``)
``V[t] = H[t] - V_th * S[t]``.

The backward pass (eqs. 8-17) runs in reverse time inside one autograd Function;
the forward saves only ``H`` (spikes and ``V[t-1]`` are recomputed from it).
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch
from spikingjelly.activation_based import neuron, surrogate

from . import backends

__all__ = ["PLIFNode", "LIFNode", "NeuronConfig", "multi_step", "surrogate_grad"]


class NeuronConfig(NamedTuple):
    """Everything but the tensors that a neuron kernel needs."""

    decay_input: bool
    v_threshold: float
    v_reset: float | None  # None = soft reset (subtract v_threshold)
    detach_reset: bool
    surrogate_function: surrogate.SurrogateFunctionBase
    store_v_seq: bool  # return V for every step instead of the last one


def surrogate_grad(surrogate_function: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """dS/dH of any SpikingJelly surrogate at ``x = H - V_th``, same shape as ``x``."""
    backward = getattr(type(surrogate_function), "backward", None)
    params = getattr(surrogate_function, "_sg_params", None)
    if callable(backward) and params is not None:
        grad = backward(torch.ones_like(x), x, **params)
        if isinstance(grad, tuple):
            grad = grad[0]
        return grad
    with torch.enable_grad():  # surrogates without a closed-form backward
        xr = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(surrogate_function(xr).sum(), xr)
    return grad


def _charge(v: torch.Tensor, x: torch.Tensor, k: torch.Tensor, cfg: NeuronConfig) -> torch.Tensor:
    reset_value = 0.0 if cfg.v_reset is None else cfg.v_reset
    if cfg.decay_input:
        return v + (x - (v - reset_value)) * k
    return v - (v - reset_value) * k + x


def _reset(h: torch.Tensor, s: torch.Tensor, cfg: NeuronConfig) -> torch.Tensor:
    if cfg.v_reset is None:
        return h - s * cfg.v_threshold
    return s * cfg.v_reset + (1.0 - s) * h


class _TorchMultiStep(torch.autograd.Function):
    """Reference implementation: readable torch, one loop over T each way."""

    @staticmethod
    def forward(ctx, x_seq, v_init, k, cfg: NeuronConfig):
        h_seq = torch.empty_like(x_seq)
        s_seq = torch.empty_like(x_seq)
        v_seq = torch.empty_like(x_seq) if cfg.store_v_seq else None
        v = v_init
        for t in range(x_seq.shape[0]):
            h = _charge(v, x_seq[t], k, cfg)
            s = (h >= cfg.v_threshold).to(h.dtype)
            v = _reset(h, s, cfg)
            h_seq[t] = h
            s_seq[t] = s
            if v_seq is not None:
                v_seq[t] = v
        ctx.save_for_backward(h_seq, v_init, k)
        ctx.cfg = cfg
        return s_seq, (v_seq if v_seq is not None else v)

    @staticmethod
    def backward(ctx, grad_s_seq, grad_v):
        h_seq, v_init, k = ctx.saved_tensors
        cfg: NeuronConfig = ctx.cfg
        reset_value = 0.0 if cfg.v_reset is None else cfg.v_reset
        T = h_seq.shape[0]
        if grad_s_seq is None:
            grad_s_seq = torch.zeros_like(h_seq)
        grad_x_seq = torch.empty_like(h_seq)
        grad_k = torch.zeros_like(h_seq[0])
        carry = torch.zeros_like(h_seq[0])  # dL/dV[t] arriving from step t+1
        for t in range(T - 1, -1, -1):
            h = h_seq[t]
            if t > 0:
                h_prev = h_seq[t - 1]
                v_prev = _reset(h_prev, (h_prev >= cfg.v_threshold).to(h.dtype), cfg)
            else:
                v_prev = v_init
            sg = surrogate_grad(cfg.surrogate_function, h - cfg.v_threshold)
            grad_v_t = carry
            if grad_v is not None:
                if cfg.store_v_seq:
                    grad_v_t = grad_v_t + grad_v[t]
                elif t == T - 1:
                    grad_v_t = grad_v_t + grad_v
            # dV[t]/dH[t] (eqs. 12-13): the reset term is dropped by detach_reset.
            if cfg.v_reset is None:
                dv_dh = 1.0 if cfg.detach_reset else 1.0 - cfg.v_threshold * sg
            else:
                dv_dh = 1.0 - (h >= cfg.v_threshold).to(h.dtype)
                if not cfg.detach_reset:
                    dv_dh = dv_dh + (cfg.v_reset - h) * sg
            grad_h = grad_s_seq[t] * sg + grad_v_t * dv_dh
            if cfg.decay_input:
                grad_x_seq[t] = grad_h * k
                # dH/dk = X[t] - (V[t-1] - V_reset) = (H[t] - V[t-1]) / k
                grad_k += grad_h * ((h - v_prev) / k)
            else:
                grad_x_seq[t] = grad_h
                grad_k -= grad_h * (v_prev - reset_value)
            carry = grad_h * (1.0 - k)
        grad_v_init = carry if ctx.needs_input_grad[1] else None
        grad_k_out = grad_k.sum().reshape(k.shape) if ctx.needs_input_grad[2] else None
        return grad_x_seq, grad_v_init, grad_k_out, None


def multi_step(
    x_seq: torch.Tensor,
    v_init: torch.Tensor,
    k: torch.Tensor,
    cfg: NeuronConfig,
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run T steps of the neuron.

    x_seq: [T, N, *]; v_init: [N, *]; k: 0-dim decay factor (sigmoid(w) or 1/tau).
    Returns (spike_seq [T, N, *] in x_seq's dtype, v [N, *] or v_seq [T, N, *]); T = 0 gives
    empty spikes (and v_seq) and v = v_init, on every backend.
    """
    name = backends.resolve(backend, x_seq, cfg)
    compute = torch.promote_types(x_seq.dtype, torch.float32)
    if x_seq.dim() >= 1 and x_seq.shape[0] == 0:  # T = 0: no step, so no spike and V = v_init
        # clones of the empty input keep it in the autograd graph, as any number of steps does
        v_init = v_init.to(compute)
        return x_seq.clone(), (x_seq.to(compute).clone() if cfg.store_v_seq else v_init)
    k = k.to(device=x_seq.device, dtype=compute)
    if name != "torch":
        return backends.get(name).neuron_multi_step(x_seq, v_init, k, cfg)
    s_seq, v = _TorchMultiStep.apply(x_seq.to(compute), v_init.to(compute), k, cfg)
    return s_seq.to(x_seq.dtype), v


class _LeakyNode(neuron.BaseNode):
    """Shared machinery of PLIFNode and LIFNode: state, step modes, backend dispatch."""

    # SpikingJelly's protocol: set_backend(net, name) sets the nodes that list the name
    supported_backends = backends.NAMES

    def __init__(
        self,
        decay_input: bool,
        v_threshold: float,
        v_reset: float | None,
        surrogate_function: surrogate.SurrogateFunctionBase | None,
        detach_reset: bool,
        step_mode: str,
        backend: str,
        store_v_seq: bool,
    ):
        if surrogate_function is None:
            surrogate_function = surrogate.ATan(alpha=2.0)
        if not isinstance(surrogate_function, torch.nn.Module):
            raise TypeError(
                f"surrogate_function must be a SpikingJelly surrogate module such as "
                f"surrogate.ATan(alpha=2.0), got {type(surrogate_function).__name__}"
            )
        if getattr(surrogate_function, "spiking", True) is False:
            raise ValueError(
                f"{type(surrogate_function).__name__}(spiking=False) asks for the smooth surrogate "
                f"as output; these neurons always emit spikes: use spiking=True (the default)"
            )
        if step_mode not in ("s", "m"):
            raise ValueError(f"step_mode must be 's' or 'm', got {step_mode!r}")
        super().__init__(
            float(v_threshold),
            None if v_reset is None else float(v_reset),
            surrogate_function,
            bool(detach_reset),
            step_mode=step_mode,
            store_v_seq=store_v_seq,
        )
        self.decay_input = bool(decay_input)
        self.backend = backends.check_name(backend)

    def decay(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The 0-dim decay factor k = 1 / tau of the charge equation (on ``device`` when it is
        a constant)."""
        raise NotImplementedError

    @property
    def config(self) -> NeuronConfig:
        return NeuronConfig(
            self.decay_input,
            self.v_threshold,
            self.v_reset,
            self.detach_reset,
            self.surrogate_function,
            self.store_v_seq,
        )

    def _initial_state(self, x_seq: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """V before the first step of x_seq [T, N, *] (T may be 0): [N, *]."""
        v, step_shape = self.v, x_seq.shape[1:]
        if isinstance(v, torch.Tensor):
            if v.shape != step_shape:
                raise ValueError(
                    f"{type(self).__name__}: the stored membrane potential has shape "
                    f"{tuple(v.shape)} but this input step has shape {tuple(step_shape)}; call "
                    f"spikingjelly.activation_based.functional.reset_net(net) before a new batch"
                )
            return v.to(device=x_seq.device, dtype=dtype)
        return torch.full(step_shape, float(v), device=x_seq.device, dtype=dtype)

    def _check_input(self, x: torch.Tensor, min_dim: int) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            got = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
            raise TypeError(
                f"{type(self).__name__} expects a floating-point tensor, got {got}; "
                f"convert the input with .float()"
            )
        if x.dim() < min_dim:
            shape = "[T, N, *]" if min_dim == 2 else "[N, *]"
            raise ValueError(
                f"{type(self).__name__} in step_mode={self.step_mode!r} expects {shape}, got a "
                f"tensor of shape {tuple(x.shape)}"
            )

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """x_seq: [T, N, *] -> spikes [T, N, *]."""
        self._check_input(x_seq, 2)
        compute = torch.promote_types(x_seq.dtype, torch.float32)
        v_init = self._initial_state(x_seq, compute)
        s_seq, v_out = multi_step(
            x_seq, v_init, self.decay(x_seq.device), self.config, self.backend
        )
        if self.store_v_seq:
            self.v_seq = v_out
            self.v = v_out[-1] if len(v_out) else v_init
        else:
            self.v = v_out
        return s_seq

    def reset(self) -> None:
        """Every state back to its reset value. SpikingJelly's reset deep-copies a float reset
        value, which torch.compile before 2.14 cannot trace (seen with torch 2.11 on a GPU);
        a Python number needs no copy, so numbers are assigned and tensors take its path."""
        if not all(isinstance(rv, (int, float)) for rv in self._memories_rv.values()):
            return super().reset()
        for key, rv in self._memories_rv.items():
            self._memories[key] = rv
        self.v_seq = None

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, *] -> spikes [N, *]."""
        self._check_input(x, 1)
        v_seq_before = self.v_seq
        self._store_v_seq, store = False, self.store_v_seq
        try:
            s = self.multi_step_forward(x.unsqueeze(0))[0]
        finally:
            self._store_v_seq = store
        if store:
            v = self.v.unsqueeze(0)
            self.v_seq = v if v_seq_before is None else torch.cat((v_seq_before, v))
        return s

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau:.4g}, decay_input={self.decay_input}, v_threshold={self.v_threshold}, "
            f"v_reset={self.v_reset}, detach_reset={self.detach_reset}, "
            f"step_mode={self.step_mode}, backend={self.backend}"
        )


class PLIFNode(_LeakyNode):
    """Parametric LIF neuron (paper eq. 6): one learnable ``w`` per layer, ``tau = 1 / sigmoid(w)``.

    Defaults are the paper's settings. ``w`` has the name and meaning of
    SpikingJelly's ``ParametricLIFNode.w``, so state dicts interchange.
    """

    def __init__(
        self,
        init_tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
        detach_reset: bool = True,
        step_mode: str = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
    ):
        init_tau = _check_tau(init_tau, "init_tau")
        super().__init__(
            decay_input,
            v_threshold,
            v_reset,
            surrogate_function,
            detach_reset,
            step_mode,
            backend,
            store_v_seq,
        )
        self.w = torch.nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))

    def decay(self, device: torch.device | str | None = None) -> torch.Tensor:
        return self.w.sigmoid()  # on w's device: the model's

    @property
    def tau(self) -> float:
        """The current membrane time constant 1 / sigmoid(w)."""
        return 1.0 / torch.sigmoid(self.w.detach()).item()


class LIFNode(_LeakyNode):
    """LIF neuron with a fixed membrane time constant ``tau`` (the paper's baseline)."""

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = True,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
        detach_reset: bool = True,
        step_mode: str = "m",
        backend: str = "auto",
        store_v_seq: bool = False,
    ):
        self._tau = _check_tau(tau, "tau")
        super().__init__(
            decay_input,
            v_threshold,
            v_reset,
            surrogate_function,
            detach_reset,
            step_mode,
            backend,
            store_v_seq,
        )

    def decay(self, device: torch.device | str | None = None) -> torch.Tensor:
        # Made on the input's device (a fill, no host-to-device copy: no stream sync per layer
        # and step, and CUDA-graph capture works); float32 as torch.tensor(1 / tau) would be.
        return torch.full((), 1.0 / self._tau, dtype=torch.float32, device=device)

    @property
    def tau(self) -> float:
        return self._tau


def _check_tau(tau: float, name: str) -> float:
    if (
        isinstance(tau, bool)
        or not isinstance(tau, numbers.Real)  # numpy scalars too
        or not math.isfinite(tau)
        or tau <= 1.0
    ):
        raise ValueError(
            f"{name} must be a finite number > 1 (the decay 1/{name} lies in (0, 1)), got {tau!r}; "
            f"the paper uses 2.0 (and 16.0 in its ablation)"
        )
    return float(tau)
