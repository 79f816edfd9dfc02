"""ADMM, feature selection and structured pruning: projections, reachability, search, physical removal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from asc.compress.admm import ADMM, contraction
from asc.compress.complexity import Complexity, bcresnet_count, count_complexity
from asc.compress.feature_selection import check_keep, drop_bands, select_top
from asc.compress.projection import top_c_projection
from asc.compress.pruning import clear_masks, importances, mask_channels, prune_physically, search_threshold
from asc.compress.reachability import ChannelGroup, Producer, bcresnet_graph, reachability
from asc.errors import AscError
from asc.models import BCResNet, MomentsLinear, Tandem

# One torch thread: on a busy 2-core machine the default threads made single tests 4 s instead of 0.1 s.
pytestmark = pytest.mark.usefixtures("one_thread")


def test_top_c_projection_keeps_exactly_the_c_largest_magnitudes() -> None:
    w = torch.tensor([0.5, -3.0, 0.1, 2.0, -0.2, 1.0])
    (z,) = top_c_projection(3)([w])
    assert torch.equal(z, torch.tensor([0.0, -3.0, 0.0, 2.0, 0.0, 1.0]))
    assert select_top(w, 3).tolist() == [1, 3, 5]
    assert select_top(torch.ones(4), 2).tolist() == [0, 1]  # ties: earlier bands win
    with pytest.raises(AscError, match=r"model\.keep_bands: 0 must be between 1 and the number of bands \(256\)"):
        check_keep(0, 256)
    with pytest.raises(AscError, match=r"model\.keep_bands: 300"):
        check_keep(300, 256)


def test_admm_dual_update_and_penalty() -> None:
    w = nn.Parameter(torch.tensor([3.0, -1.0, 0.5]))
    admm = ADMM([w], top_c_projection(1), rho=2.0, dual_lr=0.5)
    assert torch.equal(admm.auxiliaries[0], torch.tensor([3.0, 0.0, 0.0]))  # Z = Π(W) at the start
    # ρ/2 ‖W − Z + U‖² with U = 0: (1² + 0.5²) = 1.25, times ρ/2 = 1.
    assert admm.penalty().item() == pytest.approx(1.25)
    residual = admm.update()  # Z = Π(W + 0) = [3, 0, 0];  U = 0 + 0.5 (W − Z) = [0, -0.5, 0.25]
    assert torch.allclose(admm.duals[0], torch.tensor([0.0, -0.5, 0.25]))
    assert residual == pytest.approx(1.25**0.5)
    admm.penalty().backward()
    assert torch.allclose(w.grad, 2.0 * (w.detach() - admm.auxiliaries[0] + admm.duals[0]))


def test_admm_drives_a_quadratic_problem_to_the_constraint() -> None:
    target = torch.tensor([1.0, 0.9, -0.8, 0.1])
    w = nn.Parameter(torch.zeros(4))
    admm = ADMM([w], top_c_projection(2), rho=2.0, dual_lr=0.2)  # non-convex: ρ and the dual step matter
    optimizer = torch.optim.SGD([w], lr=0.1)
    for step in range(400):
        optimizer.zero_grad()
        ((w - target).square().sum() + admm.penalty()).backward()
        optimizer.step()
        if step % 5 == 4:
            admm.update()
    assert admm.update() < 0.05  # W ends (nearly) feasible: two non-zero entries
    assert torch.allclose(w.detach()[:2], target[:2], atol=0.05) and w.detach()[2:].abs().max() < 0.05


@pytest.mark.parametrize(("dual_lr", "update_every"), [(1.0, 4), (0.3, 16), (1.0, 32)])
def test_contraction_predicts_whether_the_admm_term_reaches_the_constraint(dual_lr: float, update_every: int) -> None:
    """The ADMM term alone under torch's SGD (lr 0.005, momentum 0.9, weight decay 0.001, as the stages train)
    with a fixed structure, as pruning has: a dual step of 1 every 4 steps outpaces the primal steps and the
    residual grows; slower dual periods converge, as ``contraction`` says."""
    rate = contraction(0.005, 1.0, dual_lr, update_every, momentum=0.9, weight_decay=1e-3)
    keep = torch.tensor([1.0, 0.0, 1.0, 0.0])
    w = nn.Parameter(torch.tensor([1.0, -0.05, 0.8, 0.02]))
    admm = ADMM([w], lambda tensors: [t * keep for t in tensors], rho=1.0, dual_lr=dual_lr)
    optimizer = torch.optim.SGD([w], lr=0.005, momentum=0.9, weight_decay=1e-3)
    for step in range(128 * update_every):
        optimizer.zero_grad()
        admm.penalty().backward()
        optimizer.step()
        if step % update_every == update_every - 1:
            admm.update()
    first, last = admm.residuals[0], admm.residuals[-1]
    assert len(admm.residuals) == 129 and first == pytest.approx((0.05**2 + 0.02**2) ** 0.5)  # Z = Π(W) at the start
    if rate >= 1:
        assert (dual_lr, update_every) == (1.0, 4) and last > 100 * first
    else:
        assert last < 1e-3 * first


def _toy_graph() -> tuple[list[ChannelGroup], nn.Conv2d, nn.Conv2d]:
    """conv1: input -> 2 channels; conv2: 2 -> 2, where output 1 reads only input channel 1 (a branch)."""
    conv1, conv2 = nn.Conv2d(1, 2, 1, bias=False), nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        conv1.weight.copy_(torch.tensor([3.0, 0.5]).view(2, 1, 1, 1))
        conv2.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 4.0]]).view(2, 2, 1, 1))
    groups = [ChannelGroup("a", 2, [Producer("conv1", conv1, None)]),
              ChannelGroup("b", 2, [Producer("conv2", conv2, 0)])]
    return groups, conv1, conv2


def test_reachability_finds_the_dead_branch() -> None:
    groups, _, _ = _toy_graph()
    everything = [torch.ones(2, dtype=torch.bool)] * 2
    assert [r.tolist() for r in reachability(groups, everything)] == [[True, True], [True, True]]
    # Remove channel 1 of layer a: channel 1 of layer b reads only it, so it is unreachable.
    reach = reachability(groups, [torch.tensor([True, False]), torch.ones(2, dtype=torch.bool)])
    assert [r.tolist() for r in reach] == [[True, False], [True, False]]
    # Its importance over the reachable inputs is zero, though with all inputs assumed reachable it is the largest.
    assert importances(groups)[1].tolist() == [2.0, 4.0]
    assert importances(groups, reach)[1].tolist() == [2.0, 0.0]
    assert importances(groups, reach, norm="max")[1].tolist() == [2.0, 0.0]


def test_tied_producers_combine_by_root_mean_square_or_maximum() -> None:
    first, second = nn.Conv2d(1, 2, 1, bias=False), nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.tensor([3.0, 0.5]).view(2, 1, 1, 1))
        second.weight.copy_(torch.tensor([4.0, 0.5]).view(2, 1, 1, 1))
    groups = [ChannelGroup("tied", 2, [Producer("first", first, None), Producer("second", second, None)])]
    assert importances(groups)[0].tolist() == pytest.approx([(25 / 2) ** 0.5, 0.5])
    assert importances(groups, norm="max")[0].tolist() == [4.0, 0.5]


def test_filters_of_equal_norm_rank_every_stage_alike() -> None:
    """Stages of three blocks must not outrank stages of two just because more filters feed them."""
    model = BCResNet(n_bands=64, width=2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.div_(module.weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
    scores = torch.cat(importances(bcresnet_graph(model)))
    assert torch.allclose(scores, torch.ones_like(scores))


def _trained_like(n_bands: int = 64, width: float = 2) -> BCResNet:
    torch.manual_seed(0)
    model = BCResNet(n_bands=n_bands, width=width).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2)
                module.weight.normal_(1, 0.2)
                module.bias.normal_(0, 0.2)
    return model


def test_complexity_formula_equals_torchinfo() -> None:
    for n_bands, widths in ((256, [160, 80, 120, 160, 200]), (192, [7, 1, 30, 2, 9]), (64, [1, 1, 1, 1, 1])):
        counted = count_complexity(BCResNet(n_bands=n_bands, widths=widths), 34)
        assert bcresnet_count(widths, n_bands, 34) == (counted.params, counted.macs)


@pytest.mark.parametrize(("max_params", "max_macs"), [(3_000, 10**9), (10**9, 400_000), (2_500, 300_000)])
def test_search_meets_both_limits_and_uses_the_budget(max_params: int, max_macs: int) -> None:
    model = _trained_like()
    graph = bcresnet_graph(model)

    def measure(widths: list[int]) -> Complexity:
        return Complexity(*bcresnet_count(widths, 64, 34))

    result = search_threshold(graph, measure, max_params, max_macs)
    assert result.complexity.params <= max_params and result.complexity.macs <= max_macs
    assert min(result.widths) >= 1
    counted = count_complexity(prune_physically(model, graph, result.active), 34)
    assert (counted.params, counted.macs) == (result.complexity.params, result.complexity.macs)
    if max_params < 10**9 and max_macs == 10**9:  # the parameter budget binds
        assert result.complexity.params >= 0.99 * max_params


def test_infeasible_limits_state_the_smallest_network() -> None:
    graph = bcresnet_graph(_trained_like())
    smallest = bcresnet_count([1, 1, 1, 1, 1], 64, 34)
    with pytest.raises(AscError, match=rf"smallest connected network .* has {smallest[0]:,} params and "
                                       rf"{smallest[1]:,} MACs, above model\.max_params=100"):
        search_threshold(graph, lambda w: Complexity(*bcresnet_count(w, 64, 34)), 100, 10**9)


def test_masked_and_physically_pruned_networks_agree() -> None:
    model = _trained_like()
    graph = bcresnet_graph(model)
    torch.manual_seed(1)
    active = [torch.rand(group.size) < 0.6 for group in graph]
    for mask in active:
        mask[0] = True
    x = torch.randn(3, 1, 64, 34)
    mask_channels(model, graph, active)
    masked = model(x)
    smaller = prune_physically(model, graph, active).eval()
    clear_masks(model)
    assert smaller.widths == [int(m.sum()) for m in active]
    assert torch.allclose(smaller(x), masked, atol=1e-5)


def test_dropped_bands_keep_the_linear_models_selected_weights() -> None:
    torch.manual_seed(0)
    tandem = Tandem(MomentsLinear(64), BCResNet(n_bands=64, width=1), zero_init=False).eval()
    bands = list(range(0, 64, 2))  # 32 bands
    smaller = drop_bands(tandem, bands).eval()
    assert smaller.n_bands == 32 and smaller.linear.classifier.weight.shape == (10, 160)
    columns = [k * 64 + b for k in range(5) for b in bands]
    assert torch.equal(smaller.linear.classifier.weight, tandem.linear.classifier.weight[:, columns])
    x = torch.randn(2, 1, 64, 34)
    assert torch.allclose(smaller.cnn.head.weight, tandem.cnn.head.weight)
    assert smaller(x).shape == (2, 10)  # the full log-mel in: the network selects its bands itself
    assert smaller.bands == bands and torch.equal(smaller(x), smaller.classify(x[:, :, bands]))
    with pytest.raises(AscError, match="sub-bands do not divide"):
        drop_bands(tandem, list(range(50)))
    gains = torch.linspace(-1.5, 2.2, 32)
    scaled = drop_bands(tandem, bands, gains.tolist()).eval()  # the mask stays: the same function as masked
    assert scaled.gains == gains.tolist()
    assert torch.equal(scaled(x), scaled.classify(x[:, :, bands] * gains.view(1, 1, -1, 1)))
