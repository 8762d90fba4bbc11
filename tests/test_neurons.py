"""PLIFNode / LIFNode against SpikingJelly 2.0.0's own nodes (the peer implementation)."""

import itertools
import math

import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate

from plif_zoo import LIFNode, PLIFNode

SURROGATES = {
    "atan": lambda: surrogate.ATan(alpha=2.0),
    "sigmoid": lambda: surrogate.Sigmoid(alpha=4.0),
}
OPTIONS = list(
    itertools.product((2.0, 16.0), (True, False), (0.0, None), (True, False), sorted(SURROGATES))
)


def _ids(opt):
    tau, decay, v_reset, detach, sg = opt
    return (
        f"tau{tau:g}-{'decay' if decay else 'nodecay'}-"
        f"{'hard' if v_reset is not None else 'soft'}-"
        f"{'detach' if detach else 'attach'}-{sg}"
    )


def _pair(kind, tau, decay, v_reset, detach, sg, backend="torch"):
    kw = dict(
        decay_input=decay,
        v_reset=v_reset,
        detach_reset=detach,
        surrogate_function=SURROGATES[sg](),
    )
    if kind == "plif":
        ours = PLIFNode(init_tau=tau, backend=backend, **kw)
        peer = neuron.ParametricLIFNode(init_tau=tau, step_mode="m", **kw)
    else:
        ours = LIFNode(tau=tau, backend=backend, **kw)
        peer = neuron.LIFNode(tau=tau, step_mode="m", **kw)
    return ours, peer


def _input(T=8, shape=(3, 17), seed=0, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, *shape, generator=g) * scale + 0.3


@pytest.mark.parametrize("kind", ["plif", "lif"])
@pytest.mark.parametrize("opt", OPTIONS, ids=_ids)
def test_matches_spikingjelly_forward_and_backward(kind, opt):
    ours, peer = _pair(kind, *opt)
    tau, decay = opt[0], opt[1]
    x = _input() * (tau / 2 if decay else 1.0)  # drive both time constants to fire
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    sa, sb = ours(xa), peer(xb)
    assert torch.equal(sa, sb)
    assert sa.sum() > 0 and (1 - sa).sum() > 0  # the test exercises both outcomes
    torch.testing.assert_close(ours.v, peer.v)
    weight = torch.randn_like(sa)
    ((sa * weight).sum() + ours.v.square().sum()).backward()
    ((sb * weight).sum() + peer.v.square().sum()).backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-6)
    if kind == "plif":
        torch.testing.assert_close(ours.w.grad, peer.w.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opt", OPTIONS[:8], ids=_ids)
def test_store_v_seq_matches_spikingjelly(opt):
    tau, decay, v_reset, detach, sg = opt
    ours, peer = _pair("plif", *opt)
    ours.store_v_seq = peer.store_v_seq = True
    x = _input(T=5)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours(xa), peer(xb)
    torch.testing.assert_close(ours.v_seq, peer.v_seq)
    ours.v_seq.sum().backward()
    peer.v_seq.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours.w.grad, peer.w.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["plif", "lif"])
def test_single_step_equals_multi_step(kind):
    node_m, _ = _pair(kind, 2.0, True, 0.0, True, "atan")
    node_s, _ = _pair(kind, 2.0, True, 0.0, True, "atan")
    node_s.step_mode = "s"
    x = _input(T=6)
    xm, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
    sm = node_m(xm)
    ss = torch.stack([node_s(x_t) for x_t in xs])
    assert torch.equal(sm, ss)
    torch.testing.assert_close(node_m.v, node_s.v)
    (sm * torch.arange(sm.numel()).reshape_as(sm)).sum().backward()
    (ss * torch.arange(ss.numel()).reshape_as(ss)).sum().backward()
    torch.testing.assert_close(xm.grad, xs.grad)


@pytest.mark.parametrize("v_reset", [0.0, None])
def test_two_half_calls_equal_one_call(v_reset):
    one = PLIFNode(v_reset=v_reset, detach_reset=False)
    two = PLIFNode(v_reset=v_reset, detach_reset=False)
    x = _input(T=8)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    s1 = one(x1)
    s2 = torch.cat([two(x2[:4]), two(x2[4:])])
    assert torch.equal(s1, s2)
    torch.testing.assert_close(one.v, two.v)
    weight = torch.randn_like(s1)
    (s1 * weight).sum().backward()
    (s2 * weight).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(one.w.grad, two.w.grad)


def test_state_persists_until_reset_net():
    net = torch.nn.Sequential(layer.Linear(4, 4, step_mode="m"), PLIFNode())
    functional.set_step_mode(net, "m")
    x = _input(T=3, shape=(2, 4))
    first = net(x)
    second = net(x)
    assert not torch.equal(net[1].v, torch.zeros_like(net[1].v)) or not torch.equal(first, second)
    functional.reset_net(net)
    torch.testing.assert_close(net(x), first)


@pytest.mark.parametrize("node_cls", [PLIFNode, LIFNode])
@pytest.mark.parametrize("v_reset", [0.0, None])
def test_reset_restores_numbers_without_deepcopy(node_cls, v_reset, monkeypatch):
    # torch.compile before 2.14 cannot trace copy.deepcopy, which SpikingJelly's reset calls
    # for a float reset value; ours must not reach it, and must reset exactly as SpikingJelly.
    from spikingjelly.activation_based import base

    node = node_cls(v_reset=v_reset, store_v_seq=True)
    x = _input(T=3, shape=(2, 4))
    first = node(x)

    def no_deepcopy(obj, memo=None):
        raise AssertionError("reset called copy.deepcopy")

    monkeypatch.setattr(base.copy, "deepcopy", no_deepcopy)
    for _ in range(2):  # from a tensor state, then from a number state
        node.reset()
        assert node.v == (0.0 if v_reset is None else v_reset) and node.v_seq is None
    assert torch.equal(node(x), first)


def test_set_step_mode_switches_to_single_step():
    node = PLIFNode()
    functional.set_step_mode(node, "s")
    assert node.step_mode == "s"
    assert node(torch.ones(2, 3) * 2).shape == (2, 3)


@pytest.mark.parametrize("decay", [True, False])
@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("store_v_seq", [False, True])
def test_gradcheck_float64(decay, v_reset, store_v_seq):
    """With a detached reset, V is an exact (piecewise-smooth) function of X, v0 and w, so
    the analytic gradient of the membrane potential must match finite differences."""
    from plif_zoo.neurons import NeuronConfig, multi_step

    cfg = NeuronConfig(decay, 1.0, v_reset, True, surrogate.Sigmoid(alpha=2.0), store_v_seq)
    x = _input(T=4, shape=(5,), seed=3).double().requires_grad_()
    v0 = (torch.rand(5, dtype=torch.float64) * 0.5).requires_grad_()
    w = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)

    def membrane(x_seq, v_init, w_):
        return multi_step(x_seq, v_init, torch.sigmoid(w_), cfg, "torch")[1]

    assert torch.autograd.gradcheck(membrane, (x, v0, w), eps=1e-6, atol=1e-6)


def test_gradcheck_spike_output_with_surrogate():
    """dS/dX uses the surrogate derivative: compare against autograd through SpikingJelly's loop."""
    from plif_zoo.neurons import NeuronConfig, multi_step

    sg = surrogate.Sigmoid(alpha=2.0)
    cfg = NeuronConfig(True, 1.0, 0.0, False, sg, False)
    x = _input(T=5, shape=(4,), seed=5).double().requires_grad_()
    w = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    s, v = multi_step(x, torch.zeros_like(x[0]), torch.sigmoid(w), cfg, "torch")
    (s.sum() + v.sum()).backward()
    peer = neuron.ParametricLIFNode(
        surrogate_function=surrogate.Sigmoid(alpha=2.0), step_mode="m"
    ).double()
    peer.w.data = w.detach().clone()
    xb = x.detach().clone().requires_grad_()
    sb = peer(xb)
    (sb.sum() + peer.v.sum()).backward()
    torch.testing.assert_close(x.grad, xb.grad)
    torch.testing.assert_close(w.grad, peer.w.grad)


def test_tau_property_and_state_dict_interchange():
    ours = PLIFNode(init_tau=16.0)
    assert math.isclose(ours.tau, 16.0, rel_tol=1e-6)
    peer = neuron.ParametricLIFNode(init_tau=4.0)
    ours.load_state_dict(peer.state_dict())
    assert math.isclose(ours.tau, 4.0, rel_tol=1e-6)
    assert set(ours.state_dict()) == {"w"}
    assert LIFNode(tau=3.0).tau == 3.0


def test_paper_defaults():
    node = PLIFNode()
    assert node.tau == pytest.approx(2.0)
    assert node.v_threshold == 1.0 and node.v_reset == 0.0
    assert node.detach_reset is True and node.decay_input is True
    assert isinstance(node.surrogate_function, surrogate.ATan)
    assert node.surrogate_function.alpha == 2.0
    assert node.step_mode == "m"


def test_any_spikingjelly_surrogate_works():
    for sg in (surrogate.PiecewiseQuadratic(), surrogate.SoftSign(), surrogate.Erf()):
        ours = PLIFNode(surrogate_function=sg, backend="torch")
        peer = neuron.ParametricLIFNode(
            surrogate_function=type(sg)(), step_mode="m", detach_reset=True
        )
        x = _input(T=4)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ours(xa).sum().backward()
        peer(xb).sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [1.0, 0.5, -3.0, float("nan"), "2"])
def test_rejects_bad_init_tau(bad):
    with pytest.raises(ValueError, match="init_tau"):
        PLIFNode(init_tau=bad)
    with pytest.raises(ValueError, match="tau"):
        LIFNode(tau=bad)


def test_numpy_taus_are_numbers_too():
    np = pytest.importorskip("numpy")
    assert PLIFNode(init_tau=np.float32(2.0)).tau == pytest.approx(2.0)
    assert LIFNode(tau=np.float64(16.0)).tau == 16.0


def test_rejects_a_surrogate_that_asks_for_smooth_outputs_instead_of_spikes():
    with pytest.raises(ValueError, match=r"ATan\(spiking=False\).*always emit spikes"):
        PLIFNode(surrogate_function=surrogate.ATan(spiking=False))


def test_rejects_integer_input():
    with pytest.raises(TypeError, match="floating-point"):
        PLIFNode()(torch.ones(4, 2, 3, dtype=torch.int64))


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"\[T, N, \*\]"):
        PLIFNode()(torch.ones(4))


def test_rejects_state_of_another_shape():
    node = PLIFNode()
    node(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="reset_net"):
        node(torch.ones(2, 5, 4))


def test_rejects_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        PLIFNode(backend="triton")


def test_cupy_backend_on_cpu_tensor_is_a_clear_error():
    with pytest.raises(ValueError, match="cupy"):
        PLIFNode(backend="cupy")(torch.ones(2, 3))


def test_cpu_backend_on_a_tensor_of_another_device_is_a_clear_error():
    with pytest.raises(ValueError, match="backend='cpu' needs CPU tensors, got a tensor on meta"):
        PLIFNode(backend="cpu")(torch.ones(2, 3, device="meta"))


def test_half_precision_input_keeps_dtype():
    node = PLIFNode(backend="torch")
    x = _input(T=4).to(torch.bfloat16)
    s = node(x)
    assert s.dtype == torch.bfloat16
    assert node.v.dtype == torch.float32
    ref = PLIFNode(backend="torch")(x.float())
    assert torch.equal(s.float(), ref)


@pytest.mark.parametrize("backend", ["torch", "cpu", "auto"])
@pytest.mark.parametrize("kind", ["plif", "lif"])
@pytest.mark.parametrize("store_v_seq", [False, True])
def test_zero_steps_give_empty_spikes_and_keep_the_state(backend, kind, store_v_seq):
    node_cls = PLIFNode if kind == "plif" else LIFNode
    node = node_cls(backend=backend, store_v_seq=store_v_seq)
    x = _input(T=3, shape=(2, 5))
    node(x)
    v_before = node.v.clone()
    empty = torch.zeros(0, 2, 5, requires_grad=True)
    s = node(empty)
    assert s.shape == (0, 2, 5) and s.dtype == x.dtype
    assert torch.equal(node.v, v_before)
    if store_v_seq:
        assert node.v_seq.shape == (0, 2, 5)
    s.sum().backward()  # a graph with no step backpropagates too
    assert empty.grad is None or empty.grad.shape == empty.shape
    functional.reset_net(node)
    s = node(empty.detach())  # before any step: V is still v_reset's float
    assert s.shape == (0, 2, 5) and torch.equal(node.v, torch.zeros(2, 5))


def test_lif_decay_is_made_on_the_input_device_without_a_host_copy():
    """LIFNode's constant 1/tau is made on the input's device: no CPU tensor copied to the GPU
    on every forward (a stream sync per layer and step, and no CUDA-graph capture)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils._python_dispatch import TorchDispatchMode

    class CrossDevice(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.copies = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            inputs = [
                a
                for a in torch.utils._pytree.tree_leaves((args, kwargs))
                if isinstance(a, torch.Tensor)
            ]
            outs = [o for o in torch.utils._pytree.tree_leaves(out) if isinstance(o, torch.Tensor)]
            if any(i.device.type == "cpu" for i in inputs) and any(o.is_cuda for o in outs):
                self.copies.append(str(func))
            return out

    node = LIFNode(tau=2.0, backend="torch")
    with FakeTensorMode():
        x = torch.empty(4, 2, 8, device="cuda")
        with CrossDevice() as mode:
            node(x)
            k = node.decay(x.device)
    assert mode.copies == [] and k.is_cuda and k.dtype == torch.float32
    assert LIFNode(tau=2.0).decay().item() == 0.5
