"""The six Table 1 networks: architecture as the authors' code builds it, shapes, state,
backends."""

import pytest
import torch
from spikingjelly.activation_based import functional, layer
from torch import nn

from plif_zoo import LIFNode, PLIFNode, create_model
from plif_zoo.networks import PAPER_NETWORKS, Encoder, NetworkConfig, SpikingConvNet


def conv(cin, cout):  # bias-free 3x3 conv + BatchNorm2d (weight and bias)
    return cin * cout * 9 + 2 * cout


# Hand count from the layer table of docs/reference.md (authors' codes/models.py).
# Each entry: (weights without neurons, number of spiking layers).
AUTHORS = {
    "mnist": (conv(1, 128) + conv(128, 128) + 128 * 7 * 7 * 2048 + 2048 * 100, 4),
    "fashion-mnist": (conv(1, 128) + conv(128, 128) + 6272 * 2048 + 2048 * 100, 4),
    "cifar10": (conv(3, 256) + 5 * conv(256, 256) + 16384 * 2048 + 2048 * 100, 8),
    "nmnist": (conv(2, 128) + conv(128, 128) + 8192 * 2048 + 2048 * 100, 4),
    "cifar10-dvs": (conv(2, 128) + 3 * conv(128, 128) + 8192 * 2048 + 2048 * 100, 6),
    "dvs128-gesture": (conv(2, 128) + 4 * conv(128, 128) + 2048 * 512 + 512 * 110, 7),
}


def meta_model(name, **kw):
    with torch.device("meta"):
        return create_model(name, backend="torch", **kw)


@pytest.mark.parametrize("dataset", list(AUTHORS))
def test_plif_parameter_count_equals_authors_architecture(dataset):
    weights, spiking = AUTHORS[dataset]
    model = meta_model(f"{dataset}-plif")
    assert sum(p.numel() for p in model.parameters()) == weights + spiking  # one w per PLIF layer
    assert len(model.spiking_layers()) == spiking


@pytest.mark.parametrize("dataset", list(AUTHORS))
def test_lif_has_no_neuron_parameters(dataset):
    model = meta_model(f"{dataset}-lif")
    assert sum(p.numel() for p in model.parameters()) == AUTHORS[dataset][0]
    assert all(isinstance(m, LIFNode) for _, m in model.spiking_layers())


@pytest.mark.parametrize("dataset", list(AUTHORS))
def test_convs_and_linears_are_bias_free_and_every_conv_has_batchnorm(dataset):
    model = meta_model(f"{dataset}-plif")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == len(bns) == sum(PAPER_NETWORKS[dataset].stages)
    assert all(m.bias is None for m in convs + linears)
    assert len(linears) == 2
    assert linears[-1].out_features == PAPER_NETWORKS[dataset].num_classes * 10


@pytest.mark.parametrize(
    "dataset, dropouts",
    [
        ("mnist", 2),
        ("fashion-mnist", 2),
        ("cifar10", 1),
        ("nmnist", 2),
        ("cifar10-dvs", 2),
        ("dvs128-gesture", 2),
    ],
)
def test_number_of_dropouts_follows_authors_code(dataset, dropouts):
    model = meta_model(f"{dataset}-plif")
    found = [m for m in model.classifier if isinstance(m, layer.Dropout)]
    assert len(found) == dropouts and all(m.p == 0.5 for m in found)


def test_avgpool_and_tau16_variants_change_only_pooling_and_tau():
    from plif_zoo.pooling import SpikeAvgPool2d, SpikeMaxPool2d

    avg = meta_model("cifar10-plif-avgpool")
    assert any(isinstance(m, SpikeAvgPool2d) for m in avg.modules())
    assert not any(isinstance(m, SpikeMaxPool2d) for m in avg.modules())
    tau16 = create_model("fashion-mnist-plif-tau16", backend="torch")
    assert all(abs(t - 16.0) < 1e-4 for t in tau16.taus().values())
    lif16 = create_model("fashion-mnist-lif-tau16", backend="torch")
    assert set(lif16.taus().values()) == {16.0}


@pytest.mark.parametrize(
    "name, shape",
    [
        ("fashion-mnist-plif", (2, 1, 28, 28)),
        ("mnist-lif", (2, 1, 28, 28)),
        ("cifar10-plif", (1, 3, 32, 32)),
        ("nmnist-plif", (2, 2, 2, 34, 34)),
        ("cifar10-dvs-plif", (1, 1, 2, 128, 128)),
        ("dvs128-gesture-plif", (1, 2, 2, 128, 128)),
    ],
)
def test_output_is_class_rates_for_each_input_kind(name, shape):
    model = create_model(name, T=2, backend="torch").eval()
    x = torch.rand(shape) * (1.0 if len(shape) == 4 else 3.0)
    with torch.no_grad():
        rates = model(x)
    assert rates.shape == (shape[0], model.num_classes)
    assert rates.min() >= 0 and rates.max() <= 1


def _record_T(model):
    seen = []
    node = model.spiking_layers()[0][1]
    node.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    return seen


def test_static_model_default_T_is_papers_and_can_be_overridden():
    model = create_model("fashion-mnist-plif", backend="torch").eval()
    assert model.T == 8
    seen = _record_T(model)
    with torch.no_grad():
        model(torch.rand(1, 1, 28, 28))
        model.T = 3
        model(torch.rand(1, 1, 28, 28))
    assert seen == [8, 3]
    assert create_model("fashion-mnist-plif", T=5).T == 5
    with pytest.raises(ValueError, match="T must be a positive int"):
        model.T = 0


def test_event_model_takes_T_from_the_number_of_frames():
    model = create_model("nmnist-plif", backend="torch").eval()
    assert model.T == 10
    seen = _record_T(model)
    with torch.no_grad():
        model(torch.rand(1, 3, 2, 34, 34))
    assert seen == [3]


def test_static_encoder_runs_once_on_N_images_not_T_times():
    model = create_model("fashion-mnist-plif", T=4, backend="torch").train()
    calls = []
    model.features[0].conv.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    model(torch.rand(2, 1, 28, 28))
    assert calls == [torch.Size([2, 1, 28, 28])]


def test_normalisation_is_inside_the_model():
    model = create_model("fashion-mnist-plif", backend="torch")
    enc: Encoder = model.features[0]
    assert torch.allclose(enc.mean.flatten(), torch.tensor([0.2860]))
    assert torch.allclose(enc.std.flatten(), torch.tensor([0.3530]))
    assert "features.0.mean" not in model.state_dict()  # from the config, not the weights


def test_dropout_keeps_one_mask_per_sample_for_all_steps():
    model = create_model("fashion-mnist-plif", T=3, backend="torch").train()
    model(torch.rand(2, 1, 28, 28))
    masks = [m.mask for m in model.classifier if isinstance(m, layer.Dropout)]
    assert [tuple(m.shape) for m in masks] == [(2, 6272), (2, 2048)]


def test_every_forward_starts_from_a_fresh_state():
    model = create_model("fashion-mnist-plif", T=2, backend="torch").eval()
    for _, node in model.spiking_layers():  # make the layers fire so the state matters
        if isinstance(node, PLIFNode):
            node.v_threshold = 0.05
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        first = model(x)
        model(torch.rand(1, 1, 28, 28))  # another batch size: stale state would not even fit
        second = model(x)
    assert first.sum() > 0
    assert torch.equal(first, second)


def test_backend_passes_through_to_every_node_and_pool():
    model = create_model("nmnist-plif", backend="torch")
    layers = [
        m for m in model.modules() if hasattr(m, "backend") and not isinstance(m, nn.Sequential)
    ]
    assert len(layers) == 4 + 2  # spiking layers + poolings
    assert {m.backend for m in layers} == {"torch"}
    model.set_backend("auto")
    assert {m.backend for m in layers} == {"auto"}
    with pytest.raises(ValueError, match="unknown backend"):
        model.set_backend("tpu")


def test_reset_classifier_replaces_only_the_output_layer():
    model = create_model("fashion-mnist-plif", T=2, backend="torch").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    changed = model.reset_classifier(4)
    after = model.state_dict()
    assert changed == ["classifier.5.weight"]
    assert after["classifier.5.weight"].shape == (40, 2048)
    assert all(torch.equal(before[k], after[k]) for k in before if k not in changed)
    assert model(torch.rand(1, 1, 28, 28)).shape == (1, 4)
    assert model.config.num_classes == 4


def test_features_and_classifier_split_the_parameters():
    model = create_model("cifar10-plif", backend="torch")
    n = sum(p.numel() for p in model.parameters())
    split = sum(p.numel() for p in model.features.parameters()) + sum(
        p.numel() for p in model.classifier.parameters()
    )
    assert n == split
    assert not any(isinstance(m, nn.Linear) for m in model.features.modules())


def test_wrong_input_shape_says_what_was_expected():
    model = create_model("fashion-mnist-plif", backend="torch")
    with pytest.raises(ValueError, match=r"expected \[N, 1, 28, 28\]"):
        model(torch.rand(2, 3, 28, 28))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(1, 1, 28, 28, dtype=torch.uint8))
    events = create_model("nmnist-plif", backend="torch")
    with pytest.raises(ValueError, match=r"\[N, T, 2, 34, 34\]"):
        events(torch.rand(1, 2, 34, 34))


def test_config_round_trips_through_a_dict_and_rebuilds_the_model():
    cfg = PAPER_NETWORKS["dvs128-gesture"].replace(neuron="lif", init_tau=16.0, T=7)
    again = NetworkConfig.from_dict(cfg.to_dict())
    assert again == cfg
    with torch.device("meta"):
        model = SpikingConvNet(again)
    assert model.config == cfg and model.T == 7
    with pytest.raises(ValueError, match="unknown network config keys"):
        NetworkConfig.from_dict({**cfg.to_dict(), "colour": 1})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"neuron": "izhikevich"}, "neuron must be one of"),
        ({"pooling": "min"}, "pooling"),
        ({"fc_dropout": (True,)}, "one flag per FC layer"),
        ({"T": 0}, "T must be a positive int"),
    ],
)
def test_invalid_config_is_rejected_with_a_reason(change, message):
    with pytest.raises(ValueError, match=message):
        PAPER_NETWORKS["mnist"].replace(**change)


def _authors_loop(model, x, T):
    """The authors' StaticNetBase.forward, step by step, written out with the model's weights
    (eval mode): static conv once, then per step SN-MP-Conv-BN-SN-MP-FC-SN-FC-SN, vote, sum / T."""
    enc, conv2 = model.features[0], model.features[3]
    fc1, fc2 = model.classifier[2], model.classifier[5]
    nodes = [m for _, m in model.spiking_layers()]
    k = [torch.sigmoid(n.w.detach()) for n in nodes]
    static = enc.bn(enc.conv((x - enc.mean) / enc.std))
    v = [0.0] * 4
    counter = 0.0

    def neuron(i, inp):
        h = v[i] + (inp - v[i]) * k[i]  # v_reset = 0
        s = (h >= 1.0).float()
        v[i] = h * (1 - s)
        return s

    for _ in range(T):
        s = torch.nn.functional.max_pool2d(neuron(0, static), 2, 2)
        s = torch.nn.functional.max_pool2d(neuron(1, conv2[1](conv2[0](s))), 2, 2)
        s = neuron(2, fc1(s.flatten(1)))
        s = neuron(3, fc2(s))
        counter = counter + torch.nn.functional.avg_pool1d(s.unsqueeze(1), 10, 10).squeeze(1)
    return counter / T


def test_forward_equals_the_authors_step_by_step_loop():
    torch.manual_seed(0)
    model = create_model("fashion-mnist-plif", T=4, backend="torch").eval()
    with torch.no_grad():
        model.features[0].bn.weight.fill_(4.0)  # stronger weights so that every layer spikes
        model.features[3][1].weight.fill_(4.0)
        for n in (2, 5):
            model.classifier[n].weight.mul_(20.0)
        model.features[1].w.fill_(0.5)  # layers with different tau
        x = torch.rand(2, 1, 28, 28)
        ours = model(x)
        theirs = _authors_loop(model, x, 4)
    assert ours.sum() > 0 and len(set(ours.flatten().tolist())) > 2
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_event_forward_equals_the_authors_per_frame_loop():
    """NeuromorphicNet.forward of the authors: every layer runs per frame x[:, t], vote, sum / T."""
    F = torch.nn.functional
    torch.manual_seed(0)
    model = create_model("nmnist-plif", backend="torch").eval()
    enc, conv2 = model.features[0], model.features[3]
    fc1, fc2 = model.classifier[2], model.classifier[5]
    with torch.no_grad():
        enc.bn.weight.fill_(4.0)
        conv2[1].weight.fill_(4.0)
        fc1.weight.mul_(20.0)
        fc2.weight.mul_(20.0)
        x = (torch.rand(2, 3, 2, 34, 34) < 0.3).float() * 2
        ours = model(x)
        k = [torch.sigmoid(n.w) for _, n in model.spiking_layers()]
        v = [0.0] * 4

        def neuron(i, inp):
            h = v[i] + (inp - v[i]) * k[i]
            s = (h >= 1.0).float()
            v[i] = h * (1 - s)
            return s

        counter = 0.0
        for t in range(3):
            s = F.max_pool2d(neuron(0, enc.bn(enc.conv(x[:, t]))), 2, 2)
            s = F.max_pool2d(neuron(1, conv2[1](conv2[0](s))), 2, 2)
            s = neuron(3, fc2(neuron(2, fc1(s.flatten(1)))))
            counter = counter + F.avg_pool1d(s.unsqueeze(1), 10, 10).squeeze(1)
    assert ours.sum() > 0
    torch.testing.assert_close(ours, counter / 3, rtol=0, atol=1e-6)


def test_set_backend_follows_spikingjelly_protocol_on_mixed_networks():
    from spikingjelly.activation_based import neuron as sj_neuron

    from plif_zoo import LIFNode, PLIFNode, SpikeAvgPool2d, SpikeMaxPool2d, backends

    net = nn.Sequential(
        layer.Conv2d(1, 2, 3, step_mode="m"),
        PLIFNode(backend="torch"),
        SpikeMaxPool2d(2, backend="torch"),
        sj_neuron.ParametricLIFNode(step_mode="m"),
        LIFNode(backend="torch"),
        SpikeAvgPool2d(2, backend="torch"),
    )
    ours = [net[1], net[2], net[4], net[5]]
    assert all(set(m.supported_backends) >= {"torch", "cpu", "cupy", "auto"} for m in ours)
    backends.set_backend(net, "cpu")
    assert {m.backend for m in ours} == {"cpu"}
    backends.set_backend(net, "torch", instance=(PLIFNode,))
    assert [m.backend for m in ours] == ["torch", "cpu", "cpu", "cpu"]
    sj_set_backend = getattr(functional, "set_backend", None)
    if sj_set_backend is not None:  # SpikingJelly versions that have it (2.0.0 does not)
        sj_set_backend(net, "auto")
        assert {m.backend for m in ours} == {"auto"}


def test_set_backend_on_a_zoo_model_uses_the_protocol():
    model = create_model("fashion-mnist-plif", backend="torch")
    layers = [m for m in model.modules() if hasattr(m, "supported_backends")]
    assert model.set_backend("cpu") is model
    assert layers and {m.backend for m in layers} == {"cpu"}


# ------------------------------------------------------- the input contract (issue 12, item 8)


@pytest.fixture(scope="module")
def image_net():
    torch.manual_seed(0)
    return create_model("fashion-mnist-plif", T=2, backend="torch").eval()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_input_is_an_error(image_net, bad):
    x = torch.rand(2, 1, 28, 28)
    x[1, 0, 3, 4] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        image_net(x)


def test_non_finite_event_frames_are_an_error():
    net = create_model("nmnist-plif", T=2, backend="torch")
    with pytest.raises(ValueError, match="NaN or infinite"):
        net(torch.full((1, 2, 2, 34, 34), float("nan")))
    net(torch.full((1, 2, 2, 34, 34), 7.0))  # event counts are not limited to [0, 1]


def test_images_on_the_0_255_scale_are_an_error_that_says_divide_by_255(image_net):
    with pytest.raises(ValueError, match=r"\[0, 1\].*divide by 255"):
        image_net(torch.rand(2, 1, 28, 28) * 255)


def test_already_normalised_images_are_an_error(image_net):
    x = (torch.rand(2, 1, 28, 28) - 0.286) / 0.353  # normalised twice otherwise
    with pytest.raises(ValueError, match="normalises them with its own mean/std"):
        image_net(x)


def test_slight_overshoot_of_an_interpolation_is_accepted(image_net):
    x = torch.rand(2, 1, 28, 28) * 1.2 - 0.1  # [-0.1, 1.1]: a bicubic resize can give this
    with torch.no_grad():
        assert image_net(x).shape == (2, 10)


def test_uint8_error_advises_dividing_by_255(image_net):
    with pytest.raises(TypeError, match=r"\.float\(\) / 255"):
        image_net(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))


def test_float64_input_is_cast_to_the_weights_dtype(image_net):
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(image_net(x), image_net(x.float()))


def test_the_value_check_costs_little_next_to_the_forward_pass(image_net):
    # Measured (1 thread, batch 16, paper T=8): 0.006 ms vs 745 ms for fashion-mnist-plif,
    # 0.011 ms vs 10.8 s for cifar10-plif: under 0.01% of the forward pass.
    import time

    from plif_zoo.networks import _check_values

    x = torch.rand(16, 1, 28, 28)

    def best(fn, n):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    with torch.no_grad():
        forward = best(lambda: image_net(x), 3)
    check = best(lambda: _check_values(x, True), 20)
    assert check < 0.02 * forward, (check, forward)
