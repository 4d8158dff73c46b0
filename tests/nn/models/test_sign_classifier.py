import pytest
import torch
import torch.nn.functional as F

from graphops.nn.models.sign_classifier import SIGNClassifier
from graphops.testing import DTYPES, devices, random_features, tolerance
from graphops.testing.sign_classifier import concat_mlp_reference, sign_inception_reference


def operator_outputs(num_nodes, channels, dtype=torch.float64, device='cpu', seed=0):
    return [
        random_features(num_nodes, c, seed=seed + i, dtype=dtype).to(device)
        for i, c in enumerate(channels)
    ]


def randomize_batch_norms(model, seed=0):
    """Non-trivial running statistics and affine parameters, so eval-mode BN is really tested."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            n = module.num_features
            dtype = module.weight.dtype
            module.running_mean.copy_(torch.randn(n, generator=gen, dtype=dtype))
            module.running_var.copy_(torch.rand(n, generator=gen, dtype=dtype) + 0.5)
            module.weight.data.copy_(torch.randn(n, generator=gen, dtype=dtype))
            module.bias.data.copy_(torch.randn(n, generator=gen, dtype=dtype))


def norm_stats(bn):
    return (bn.running_mean, bn.running_var, bn.weight, bn.bias)


CHANNELS = [[5], [5, 5, 5], [4, 6, 3, 7]]


@pytest.mark.parametrize('device', devices())
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('channels', CHANNELS, ids=str)
@pytest.mark.parametrize('batch_norm', [False, True])
def test_inception_matches_paper_equations(device, dtype, channels, batch_norm):
    torch.manual_seed(0)
    model = SIGNClassifier(channels, 8, 3, len(channels), batch_norm=batch_norm)
    model = model.to(device, dtype)
    randomize_batch_norms(model)
    model.act.weight.data.fill_(0.1)  # a slope that differs from the default init
    model.eval()
    xs = operator_outputs(11, channels, dtype, device)
    thetas = [(branch[0].weight, branch[0].bias) for branch in model.branches]
    norms = [norm_stats(branch[1]) for branch in model.branches] if batch_norm else None
    omega = (model.head[0].weight, model.head[0].bias)
    expected = sign_inception_reference(xs, thetas, model.act.weight, omega, norms)
    with torch.no_grad():
        torch.testing.assert_close(model(xs), expected, **tolerance(dtype))


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('batch_norm', [False, True])
@pytest.mark.parametrize('head_layers', [1, 3])
def test_concat_mlp_matches_authors_mlp(dtype, batch_norm, head_layers):
    channels = [4, 4, 4]
    model = SIGNClassifier(
        4, 8, 5, 3, mode='concat-mlp', head_layers=head_layers, batch_norm=batch_norm
    ).to(dtype)
    randomize_batch_norms(model, seed=1)
    model.eval()
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    bns = [m for m in model.head if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(linears) == head_layers
    assert len(bns) == (head_layers - 1 if batch_norm else 0)
    xs = operator_outputs(9, channels, dtype)
    expected = concat_mlp_reference(
        xs,
        [(lin.weight, lin.bias) for lin in linears],
        [norm_stats(bn) for bn in bns] if batch_norm else None,
    )
    with torch.no_grad():
        torch.testing.assert_close(model(xs), expected, **tolerance(dtype))


def test_authors_papers100m_configuration():
    # 3 undirected + 3 directed + 3 transposed hops and the raw features: 10 blocks of 128.
    model = SIGNClassifier(128, 512, 172, 10, mode='concat-mlp', dropout=0.3)
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (1280, 512),
        (512, 512),
        (512, 172),
    ]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.head) == 2
    assert sum(isinstance(m, torch.nn.ReLU) for m in model.head) == 2
    assert model.head_layers == 3
    assert len(model.branches) == 0


@pytest.mark.parametrize('branch_layers,head_layers', [(1, 1), (2, 1), (1, 2), (3, 3)])
def test_inception_depths(branch_layers, head_layers):
    model = SIGNClassifier(6, 16, 4, 3, branch_layers=branch_layers, head_layers=head_layers)
    for branch in model.branches:
        assert sum(isinstance(m, torch.nn.Linear) for m in branch) == branch_layers
        # BatchNorm after every branch linear layer, the output one included.
        assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in branch) == branch_layers
    assert sum(isinstance(m, torch.nn.Linear) for m in model.head) == head_layers
    xs = operator_outputs(10, [6, 6, 6], torch.float32)
    out = model(xs)
    assert out.shape == (10, 4)
    out.sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name


def test_dropout_only_in_training():
    model = SIGNClassifier(6, 16, 4, 2, dropout=0.5, input_dropout=0.3)
    xs = operator_outputs(20, [6, 6], torch.float32)
    model.train()
    torch.manual_seed(0)
    first = model(xs)
    torch.manual_seed(1)
    assert not torch.allclose(first, model(xs))
    model.eval()
    torch.testing.assert_close(model(xs), model(xs))


def test_input_dropout_reaches_the_inputs():
    model = SIGNClassifier(6, 16, 4, 2, dropout=0.0, input_dropout=0.0, batch_norm=False)
    xs = operator_outputs(20, [6, 6], torch.float32)
    model.train()
    reference = model(xs)
    model.input_drop.p = 0.9
    torch.manual_seed(0)
    assert not torch.allclose(reference, model(xs))


def test_learns_a_separable_task():
    # Class is decided by operator 1 alone: the model must route information through branches.
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (300,), generator=gen)
    centers = torch.randn(3, 4, generator=gen) * 3
    xs = [torch.randn(300, 4, generator=gen), centers[y] + torch.randn(300, 4, generator=gen)]
    torch.manual_seed(0)
    model = SIGNClassifier(4, 16, 3, 2, dropout=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        optimizer.zero_grad()
        F.cross_entropy(model(xs), y).backward()
        optimizer.step()
    model.eval()
    accuracy = (model(xs).argmax(-1) == y).float().mean().item()
    assert accuracy > 0.9


def test_reset_parameters_restores_initialisation():
    torch.manual_seed(0)
    model = SIGNClassifier(6, 8, 3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.reset_parameters()
    after = model.state_dict()
    # Linear layers are re-drawn at random; BatchNorm and PReLU go back to their fixed init.
    assert torch.equal(after['act.weight'], before['act.weight'])
    assert torch.equal(after['branches.0.1.weight'], torch.ones(8))
    assert not torch.equal(after['head.0.weight'], before['head.0.weight'] + 1.0)


def test_parameters_are_created_and_reset_in_init():
    torch.manual_seed(3)
    a = SIGNClassifier(6, 8, 3, 2)
    torch.manual_seed(3)
    b = SIGNClassifier(6, 8, 3, 2)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_repr():
    assert repr(SIGNClassifier(128, 512, 172, 10, mode='concat-mlp', dropout=0.3)) == (
        "SIGNClassifier(128, 512, 172, num_operators=10, mode='concat-mlp', branch_layers=1, "
        'head_layers=3, dropout=0.3, input_dropout=0.0, batch_norm=True)'
    )
    assert repr(SIGNClassifier([4, 6], 8, 3, 2, input_dropout=0.2, batch_norm=False)) == (
        "SIGNClassifier([4, 6], 8, 3, num_operators=2, mode='inception', branch_layers=1, "
        'head_layers=1, dropout=0.5, input_dropout=0.2, batch_norm=False)'
    )


@pytest.mark.parametrize(
    'kwargs,error,match',
    [
        ({'num_operators': 0}, ValueError, 'num_operators must be >= 1'),
        ({'num_operators': 2.0}, TypeError, 'num_operators must be an int'),
        ({'in_channels': [4, 4, 4]}, ValueError, 'in_channels lists 3 sizes'),
        ({'in_channels': 'abc'}, TypeError, 'in_channels must be an int or a list'),
        ({'in_channels': [4, 0]}, ValueError, r'in_channels\[1\] must be >= 1'),
        ({'hidden_channels': 0}, ValueError, 'hidden_channels must be >= 1'),
        ({'out_channels': -1}, ValueError, 'out_channels must be >= 1'),
        ({'mode': 'mlp'}, ValueError, 'mode must be one of'),
        ({'mode': 'concat-mlp', 'branch_layers': 2}, ValueError, 'has no branches'),
        ({'branch_layers': 0}, ValueError, 'branch_layers must be >= 1'),
        ({'head_layers': 0}, ValueError, 'head_layers must be >= 1'),
        ({'dropout': 1.0}, ValueError, r'dropout must lie in \[0, 1\)'),
        ({'dropout': '0.5'}, TypeError, 'dropout must be a float'),
        ({'input_dropout': -0.1}, ValueError, 'input_dropout must lie'),
        ({'batch_norm': 1}, TypeError, 'batch_norm must be a bool'),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    args = {'in_channels': 4, 'hidden_channels': 8, 'out_channels': 3, 'num_operators': 2}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        SIGNClassifier(**args)


def _good():
    return [torch.randn(5, 4), torch.randn(5, 4)]


@pytest.mark.parametrize(
    'make_xs,error,match',
    [
        (lambda: torch.randn(2, 5, 4), TypeError, 'xs must be a list of tensors'),
        (lambda: _good()[:1], ValueError, 'xs has 1 tensors but .* num_operators = 2'),
        (lambda: [torch.randn(5, 4), torch.randn(5, 3)], ValueError, r'xs\[1\] has 3 features'),
        (lambda: [torch.randn(5, 4), torch.randn(4, 4)], ValueError, r'xs\[1\] has 4 rows'),
        (lambda: [torch.randn(5, 4), torch.randn(5)], ValueError, r'xs\[1\] must be 2-dim'),
        (
            lambda: [torch.randn(5, 4), torch.ones(5, 4, dtype=torch.long)],
            TypeError,
            r'xs\[1\] must be a floating-point',
        ),
        (
            lambda: [torch.randn(5, 4), torch.randn(5, 4).double()],
            TypeError,
            r'xs\[1\] is torch.float64 but the model parameters are torch.float32',
        ),
        (
            lambda: [torch.randn(5, 4), torch.full((5, 4), float('nan'))],
            ValueError,
            r'xs\[1\] contains NaN',
        ),
        (
            lambda: [torch.randn(5, 4), torch.full((5, 4), float('inf'))],
            ValueError,
            r'xs\[1\] contains NaN or Inf',
        ),
        (lambda: [torch.randn(0, 4), torch.randn(0, 4)], ValueError, 'xs has no rows'),
        (lambda: [torch.randn(5, 4), 'x'], TypeError, r'xs\[1\] must be a torch.Tensor'),
    ],
)
def test_bad_forward_inputs(make_xs, error, match):
    model = SIGNClassifier(4, 8, 3, 2).eval()
    with pytest.raises(error, match=match):
        model(make_xs())


# --- torch.compile ---------------------------------------------------------------------------------

COMPILE_CONFIGS = {
    'inception': {},
    'concat-mlp': {'mode': 'concat-mlp'},
    'deep': {'branch_layers': 2, 'head_layers': 2, 'input_dropout': 0.1},
    'no-batch-norm': {'batch_norm': False},
}


def compile_case(config):
    torch.manual_seed(0)
    model = SIGNClassifier([6, 6, 4], 8, 3, num_operators=3, **COMPILE_CONFIGS[config]).double()
    xs = [torch.randn(10, c, dtype=torch.float64) for c in (6, 6, 4)]
    return model, xs


@pytest.mark.parametrize('training', [False, True])
@pytest.mark.parametrize('config', list(COMPILE_CONFIGS))
def test_no_graph_break(config, training):
    model, xs = compile_case(config)
    model.train(training)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(xs)
    assert explained.graph_break_count == 0, explained.break_reasons


def compiled_equals_eager(config, backend):
    model, xs = compile_case(config)
    model.eval()  # dropout off: the same function both ways
    upstream = torch.randn(10, 3, dtype=torch.float64)

    def run(module):
        model.zero_grad()
        inputs = [x.clone().requires_grad_() for x in xs]
        out = module(inputs)
        (out * upstream).sum().backward()
        return [out.detach(), *(p.grad for p in model.parameters()), *(x.grad for x in inputs)]

    expected = run(model)
    torch._dynamo.reset()
    got = run(torch.compile(model, backend=backend, fullgraph=True))
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_inductor_equals_eager_small_case():
    compiled_equals_eager('inception', 'inductor')


@pytest.mark.slow
@pytest.mark.parametrize('config', list(COMPILE_CONFIGS))
def test_inductor_equals_eager(config):
    compiled_equals_eager(config, 'inductor')


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_inputs_on_another_device():
    model = SIGNClassifier(4, 8, 3, 2).eval()
    with pytest.raises(ValueError, match=r'xs\[0\] is on cuda'):
        model([torch.randn(5, 4, device='cuda'), torch.randn(5, 4, device='cuda')])


# --- CUDA (gpu-marked) ---


@pytest.mark.gpu
@pytest.mark.parametrize('mode', ['inception', 'concat-mlp'])
@pytest.mark.parametrize('batch_norm', [False, True])
def test_device_matches_cpu(matches_cpu, mode, batch_norm):
    torch.manual_seed(0)
    model = SIGNClassifier(5, 8, 3, 3, mode=mode, batch_norm=batch_norm).double()
    randomize_batch_norms(model)
    xs = [x.requires_grad_() for x in operator_outputs(11, [5, 5, 5])]
    matches_cpu(model.eval(), xs, grad=True)
