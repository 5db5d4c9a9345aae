"""SparseAdditiveRefinement and AdditiveRefinementHead: normalisation, penalty, proximal step,
shape functions, the head's loss, and recovery of the informative dimensions on a synthetic problem."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from hrrkit.nn import AdditiveRefinementHead, CorrentropyLoss, SparseAdditiveRefinement
from hrrkit.ops import additive_expand_reference
from hrrkit.testing import assert_close


@pytest.fixture
def one_thread():
    """The recovery test runs hundreds of tiny steps; with two busy cores, intra-op threads only
    contend, so run it on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("basis", ["bspline", "rbf"])
def test_forward_outputs_refined_vector_and_additive_logit(basis):
    afr = SparseAdditiveRefinement(6, num_basis=8, basis=basis)
    with torch.no_grad():
        afr.beta.normal_()
        afr.bias.fill_(0.25)
    for shape in ((5, 6), (2, 3, 6)):
        h = torch.randn(shape) * 3
        out = afr(h)
        assert out.refined.shape == shape and out.logit.shape == shape[:-1]
        u = afr.normalize(h)
        assert_close(out.refined, additive_expand_reference(u, afr.beta, basis=basis), torch.float32)
        assert_close(out.logit, 0.25 + out.refined.sum(-1), torch.float32)


def test_wrong_feature_count_is_a_clear_error():
    with pytest.raises(ValueError, match="expected 6 features"):
        SparseAdditiveRefinement(6)(torch.randn(3, 5))


def test_running_statistics_follow_batchnorm():
    afr = SparseAdditiveRefinement(4, normalization="standardize", momentum=0.2)
    bn = nn.BatchNorm1d(4, affine=False, momentum=0.2)
    for i in range(3):
        h = torch.randn(16, 4) * (i + 1) + i
        afr(h)
        bn(h)
    assert_close(afr.running_mean, bn.running_mean, torch.float32)
    assert_close(afr.running_var, bn.running_var, torch.float32)
    # training mode uses the batch's statistics: standardize maps ±sigmas std to the range ends
    h = torch.randn(64, 4) * 5 + 2
    z = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + afr.eps)
    assert_close(afr.normalize(h), z / afr.sigmas, torch.float32)
    afr.eval()
    z_eval = (h - afr.running_mean) / torch.sqrt(afr.running_var + afr.eps)
    assert_close(afr.normalize(h), z_eval / afr.sigmas, torch.float32)


def test_tanh_normalisation_stays_inside_the_range_and_single_rows_use_running_stats():
    afr = SparseAdditiveRefinement(3, lo=0.0, hi=2.0)
    u = afr.normalize(torch.randn(100, 3) * 1e3)
    assert (u > 0).all() and (u < 2).all()
    before = afr.running_mean.clone()
    afr.normalize(torch.randn(1, 3))  # one row: no batch variance, running statistics are used
    assert torch.equal(afr.running_mean, before)
    assert SparseAdditiveRefinement(3, normalization="none").normalize(torch.full((2, 3), 7.0)).eq(7.0).all()


@pytest.mark.parametrize(("basis", "tol"), [("bspline", 1e-6), ("rbf", 2e-2)])
def test_linear_init_makes_the_refined_vector_the_normalised_input(basis, tol):
    # float64, so the bound measures the basis (a cubic B-spline reproduces lines exactly), not rounding
    afr = SparseAdditiveRefinement(5, num_basis=12, basis=basis, init="linear").double().eval()
    h = torch.randn(50, 5, dtype=torch.float64)
    u = afr.normalize(h)
    assert (afr(h).refined - u).abs().max().item() < tol


def test_group_norms_penalty_and_adaptive_weights():
    afr = SparseAdditiveRefinement(4, num_basis=4)
    rows = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0], [0.0] * 4, [1.0, 1.0, 1.0, 1.0]])
    with torch.no_grad():
        afr.beta.copy_(rows)
    assert_close(afr.group_norms(), torch.tensor([5.0, 1.0, 0.0, 2.0]), torch.float32)
    assert afr.penalty().item() == pytest.approx(8.0)
    tau = afr.set_adaptive_weights(gamma=2.0, eps=0.01)
    mean = 2.0
    expected = torch.tensor([(mean / 5) ** 2, (mean / 1) ** 2, (1 / 0.01) ** 2, (mean / 2) ** 2])
    assert_close(tau, expected, torch.float32)
    assert afr.penalty().item() == pytest.approx(5 * 0.16 + 1 * 4.0 + 0 + 2 * 1.0)
    afr.reset_adaptive_weights()
    assert (afr.tau == 1).all()
    with torch.no_grad():
        afr.beta.zero_()
    with pytest.raises(ValueError, match="fit first"):
        afr.set_adaptive_weights()
    # the penalty is differentiable: d/dβ_j τ_j‖β_j‖ = τ_j β_j/‖β_j‖
    with torch.no_grad():
        afr.beta.copy_(rows + 0.5)
    afr.penalty().backward()
    assert_close(afr.beta.grad, (rows + 0.5) / (rows + 0.5).norm(dim=1, keepdim=True), torch.float32)


def test_proximal_step_is_the_group_soft_threshold_with_exact_zeros():
    afr = SparseAdditiveRefinement(5, num_basis=4)
    start = torch.tensor(
        [[3.0, 4.0, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0], [0.0] * 4, [0.3, -0.4, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]
    )
    with torch.no_grad():
        afr.beta.copy_(start)
        afr.tau.copy_(torch.tensor([1.0, 1.0, 1.0, 2.0, 0.5]))
    lr, strength = 0.5, 0.5  # thresholds lr·λ·τ_j = 0.25, 0.25, 0.25, 0.5, 0.125
    afr.proximal_step(lr, strength)
    norms = start.norm(dim=1)
    thresholds = torch.tensor([0.25, 0.25, 0.25, 0.5, 0.125])
    expected = start * torch.clamp(1 - thresholds / norms.clamp_min(1e-30), min=0)[:, None]
    assert_close(afr.beta.detach(), expected, torch.float32)
    # rows 1 (norm 0.1 < 0.25), 2 (already zero) and 3 (norm 0.5 = threshold) are exactly zero
    assert (afr.beta[[1, 2, 3]] == 0).all()
    assert afr.active_dimensions().tolist() == [0, 4]
    assert afr.active_dimensions(threshold=1.9).tolist() == [0]  # norms 4.75, 1.875
    # the result minimises ½‖x − v‖² + t‖x‖ row by row: no nearby point does better
    v, t = start[0], 0.25
    x = afr.beta.detach()[0]
    objective = lambda p: 0.5 * (p - v).square().sum() + t * p.norm()
    for _ in range(20):
        assert objective(x) <= objective(x + 1e-3 * torch.randn(4)) + 1e-9
    with pytest.raises(ValueError, match=">= 0"):
        afr.proximal_step(-1.0, 0.1)


def test_shape_functions_agree_with_the_forward_pass():
    afr = SparseAdditiveRefinement(4, num_basis=8)
    with torch.no_grad():
        afr.beta.normal_()
    afr(torch.randn(200, 4) * 2 + 1)  # learn running statistics
    afr.eval()
    x, g = afr.shape_functions(33)
    assert x.shape == g.shape == (33, 4)
    assert_close(x[:, 0], torch.linspace(-1, 1, 33), torch.float32)
    assert_close(g, additive_expand_reference(x, afr.beta.detach()), torch.float32)
    # in input units the grid is mean ± 3 std, and g_j(x_j) is what forward gives for that value
    x_in, g_in = afr.shape_functions(21, dims=[1, 3], space="input")
    assert x_in.shape == (21, 2)
    h = torch.zeros(21, 4)
    h[:, [1, 3]] = x_in
    assert_close(g_in, afr(h).refined[:, [1, 3]].detach(), torch.float32)
    std = (afr.running_var[1] + afr.eps).sqrt()
    assert x_in[0, 0].item() == pytest.approx((afr.running_mean[1] - 3 * std).item(), rel=1e-5)


def test_state_dict_keeps_weights_statistics_and_tau():
    afr = SparseAdditiveRefinement(3, num_basis=5, basis="rbf")
    afr(torch.randn(10, 3))
    afr.tau.fill_(2.0)
    clone = SparseAdditiveRefinement(3, num_basis=5, basis="rbf")
    clone.load_state_dict(afr.state_dict())
    assert torch.equal(clone.tau, afr.tau) and torch.equal(clone.running_var, afr.running_var)


def test_head_loss_parts():
    torch.manual_seed(1)
    head = AdditiveRefinementHead(
        7, bce_weight=0.7, correntropy_weight=0.3, correntropy_sigma=1.5, sparsity=0.1, init="linear"
    )
    h, t = torch.randn(32, 7), torch.randint(0, 2, (32,))
    logits = head(h)
    assert logits.shape == (32,)
    parts = head.loss(logits, t)
    bce = F.binary_cross_entropy_with_logits(logits, t.float())
    cor = CorrentropyLoss(sigma=1.5)(logits, t)
    pen = 0.1 * head.afr.penalty()
    assert_close(parts.bce, bce, torch.float32)
    assert_close(parts.correntropy, cor, torch.float32)
    assert_close(parts.penalty, pen, torch.float32)
    assert_close(parts.total, 0.7 * bce + 0.3 * cor + pen, torch.float32)
    assert parts.total.requires_grad and not parts.penalty.requires_grad
    assert set(parts._asdict()) == {"total", "bce", "correntropy", "penalty"}
    # proximal mode: the penalty is reported but left to proximal_step
    head.penalty_mode = "proximal"
    parts = head.loss(head(h), t)
    assert_close(parts.total, 0.7 * bce + 0.3 * cor, torch.float32)
    assert_close(parts.penalty, pen, torch.float32)
    only_cor = AdditiveRefinementHead(7, bce_weight=0.0, correntropy_weight=1.0, sparsity=0.0)
    assert only_cor.loss(only_cor(h), t).bce.item() == 0.0


def test_head_argument_errors():
    with pytest.raises(ValueError, match="both 0"):
        AdditiveRefinementHead(4, bce_weight=0.0, correntropy_weight=0.0)
    with pytest.raises(ValueError, match="penalty_mode"):
        AdditiveRefinementHead(4, penalty_mode="adam")
    with pytest.raises(ValueError, match=">= 0"):
        AdditiveRefinementHead(4, sparsity=-1.0)
    with pytest.raises(ValueError, match="normalization"):
        AdditiveRefinementHead(4, normalization="layernorm")
    with pytest.raises(ValueError, match="K >= 4"):
        AdditiveRefinementHead(4, num_basis=3)
    with pytest.raises(ValueError, match="differ"):
        head = AdditiveRefinementHead(4)
        head.loss(torch.zeros(3), torch.zeros(3, 1))


def _synthetic(n: int, seed: int, informative=(2, 7, 13), features: int = 20):
    """Labels depend non-linearly on three of twenty dimensions; the rest are noise."""
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(n, features, generator=gen)
    a, b, c = informative
    score = 1.5 * (h[:, a] ** 2 - 1) + 2 * torch.tanh(2 * h[:, b]) - 1.5 * h[:, c]
    labels = (score + 0.3 * torch.randn(n, generator=gen) > 0).float()
    return h, labels


@pytest.mark.parametrize("basis", ["bspline", "rbf"])
def test_penalised_training_recovers_the_informative_dimensions(one_thread, basis):
    torch.manual_seed(0)
    h, y = _synthetic(800, seed=0)
    h_test, y_test = _synthetic(2000, seed=1)
    head = AdditiveRefinementHead(
        20, num_basis=8, basis=basis, correntropy_weight=0.5, sparsity=0.02, penalty_mode="proximal", impl="reference"
    )
    lr = 1.0
    opt = torch.optim.SGD(head.parameters(), lr=lr)

    def fit(steps: int) -> None:
        head.train()
        for _ in range(steps):
            parts = head.loss(head(h), y)
            opt.zero_grad()
            parts.total.backward()
            opt.step()
            head.proximal_step(lr)

    # stage 1: an unpenalised fit, from which the adaptive weights τ are set
    sparsity, head.sparsity = head.sparsity, 0.0
    fit(80)
    assert head.active_dimensions().numel() == 20
    head.afr.set_adaptive_weights(gamma=1.0)
    # stage 2: proximal gradient with the weighted group penalty switches the noise off
    head.sparsity = sparsity
    fit(120)
    assert head.active_dimensions().tolist() == [2, 7, 13]
    dead = torch.ones(20, dtype=torch.bool)
    dead[[2, 7, 13]] = False
    assert (head.afr.beta[dead] == 0).all(), "switched-off dimensions are exactly zero"
    head.eval()
    accuracy = ((head(h_test) > 0).float() == y_test).float().mean().item()
    assert accuracy > 0.9
    # the recovered shape function of the quadratic dimension is U-shaped
    _, g = head.afr.shape_functions(torch.tensor([-2.0, 0.0, 2.0]), dims=[2], space="input")
    assert g[0, 0] > g[1, 0] < g[2, 0]
    assert math.isfinite(head.loss(head(h), y).total.item())


@pytest.mark.kernel
def test_module_on_the_fused_path_matches_the_reference(device):
    torch.manual_seed(0)
    ref = SparseAdditiveRefinement(9, num_basis=8, impl="reference", init="linear").to(device)
    fused = SparseAdditiveRefinement(9, num_basis=8, impl="triton", init="linear").to(device)
    with torch.no_grad():
        ref.beta.add_(0.1 * torch.randn_like(ref.beta))
        fused.beta.copy_(ref.beta)
    h = torch.randn(2, 11, 9, device=device)
    outs = [m(h) for m in (ref, fused)]
    for out in outs:
        (out.logit.sum() + out.refined.square().sum()).backward()
    assert_close(outs[1].refined, outs[0].refined, torch.float32)
    assert_close(outs[1].logit, outs[0].logit, torch.float32)
    assert_close(fused.beta.grad, ref.beta.grad, torch.float32)
