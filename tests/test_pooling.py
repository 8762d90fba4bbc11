"""SpikeMaxPool2d / SpikeAvgPool2d against SpikingJelly's multi-step pooling layers."""

import pytest
import torch
from spikingjelly.activation_based import layer

from plif_zoo import SpikeAvgPool2d, SpikeMaxPool2d
from plif_zoo.pooling import max_pool_multi_step


def _spikes(shape, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


@pytest.mark.parametrize("shape", [(4, 2, 3, 8, 8), (3, 1, 2, 7, 9), (1, 2, 1, 2, 2)])
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_max_pool_matches_spikingjelly(shape, p):
    x = _spikes(shape, p)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = SpikeMaxPool2d(2, 2)(xa)
    yb = layer.MaxPool2d(2, 2, step_mode="m")(xb)
    assert torch.equal(ya, yb)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    assert torch.equal(xa.grad, xb.grad)


def test_max_pool_routes_gradient_to_first_spike():
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0]]).reshape(1, 1, 1, 2, 2).requires_grad_()
    SpikeMaxPool2d()(x).sum().backward()
    assert x.grad.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]


def test_max_pool_on_real_values_matches_torch():
    x = torch.randn(3, 2, 4, 6, 6, requires_grad=True)
    xb = x.detach().clone().requires_grad_()
    y = SpikeMaxPool2d(3, 3)(x)
    yb = torch.nn.functional.max_pool2d(xb.flatten(0, 1), 3, 3).reshape(3, 2, 4, 2, 2)
    assert torch.equal(y, yb)
    y.sum().backward()
    yb.sum().backward()
    assert torch.equal(x.grad, xb.grad)


def test_overlapping_windows_fall_back_to_torch():
    x = _spikes((2, 1, 1, 5, 5)).requires_grad_()
    y = SpikeMaxPool2d(3, 1)(x)
    assert y.shape == (2, 1, 1, 3, 3)


def test_max_pool_keeps_no_int64_indices():
    x = _spikes((2, 2, 3, 8, 8)).requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        SpikeMaxPool2d()(x)
    assert saved and all(t.dtype != torch.int64 for t in saved)


def test_single_step_mode():
    x = _spikes((2, 3, 8, 8))
    pool = SpikeMaxPool2d(step_mode="s")
    assert torch.equal(pool(x), torch.nn.functional.max_pool2d(x, 2, 2))


def test_avg_pool_matches_spikingjelly():
    x = _spikes((4, 2, 3, 8, 8)).requires_grad_()
    xb = x.detach().clone().requires_grad_()
    ya = SpikeAvgPool2d(2, 2)(x)
    yb = layer.AvgPool2d(2, 2, step_mode="m")(xb)
    torch.testing.assert_close(ya, yb)
    ya.sum().backward()
    yb.sum().backward()
    torch.testing.assert_close(x.grad, xb.grad)


def test_rejects_wrong_rank_and_dtype():
    with pytest.raises(ValueError, match=r"\[T, N, C, H, W\]"):
        SpikeMaxPool2d()(torch.ones(2, 3, 8, 8))
    with pytest.raises(TypeError, match="floating-point"):
        SpikeMaxPool2d()(torch.ones(1, 2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown backend"):
        SpikeMaxPool2d(backend="nope")


@pytest.mark.parametrize("bad", [-2, 0, (2, -1), (2,), 2.0, True])
def test_bad_kernel_size_is_refused_at_construction(bad):
    for layer_cls in (SpikeMaxPool2d, SpikeAvgPool2d):
        with pytest.raises(ValueError, match="kernel_size must be a positive int"):
            layer_cls(kernel_size=bad)
    with pytest.raises(ValueError, match="stride must be a positive int"):
        SpikeMaxPool2d(2, stride=-1)


@pytest.mark.parametrize("backend", ["torch", "cpu", "auto"])
@pytest.mark.parametrize("kernel,stride", [(3, None), (3, 1)])
def test_input_smaller_than_the_window_is_one_clear_error_on_every_backend(backend, kernel, stride):
    x = _spikes((2, 1, 3, 2, 5))
    for layer_cls in (SpikeMaxPool2d, SpikeAvgPool2d):
        with pytest.raises(ValueError, match="2x5 is smaller than the pooling window 3x3"):
            layer_cls(kernel, stride, backend=backend)(x)


@pytest.mark.parametrize("backend", ["torch", "cpu", "auto"])
def test_input_without_a_channel_dim_is_one_clear_error_on_every_backend(backend):
    with pytest.raises(ValueError, match=r"pooling needs \[T, N, C, H, W\].*got shape \(3, 8, 8\)"):
        max_pool_multi_step(_spikes((3, 8, 8)), (2, 2), (2, 2), backend)


NAN = float("nan")


@pytest.mark.parametrize("backend", ["torch", "cpu", "auto"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_gradient_into_a_window_holding_nan_is_max_pool2d_s_on_every_backend(
    backend, channels_last
):
    """nn.MaxPool2d outputs NaN for such a window and sends its gradient to the last NaN."""
    x = torch.tensor(
        [
            [1.0, NAN, 0.0, 1.0, 0.0, 0.0],
            [NAN, 2.0, 1.0, NAN, 0.0, 1.0],
            [NAN, NAN, 3.0, 4.0, NAN, 0.0],
            [NAN, NAN, 5.0, 0.0, 0.0, 0.0],
        ]
    )
    x = x.expand(2, 1, 3, 4, 6)
    if channels_last:
        x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(2, 1, 3, 4, 6)
    xa = x.clone().requires_grad_()
    xb = x.detach().flatten(0, 1).clone().requires_grad_()
    ya = SpikeMaxPool2d(2, backend=backend)(xa)
    yb = torch.nn.functional.max_pool2d(xb, 2, 2)
    assert torch.equal(ya.flatten(0, 1).isnan(), yb.isnan())
    assert torch.equal(ya.flatten(0, 1).nan_to_num(), yb.nan_to_num())
    g = torch.arange(1.0, 1.0 + yb.numel()).view_as(yb)
    ya.backward(g.view_as(ya))
    yb.backward(g)
    assert torch.equal(xa.grad.flatten(0, 1), xb.grad)
