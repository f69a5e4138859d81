"""The planner's fits on synthetic pilots (numpy and scipy only: no torch, no training)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import yaml

from adapt.planner.cmr import Pilot, PlannerError, cmr_at, token_grid
from adapt.planner.laws import fit_general_law, fit_power_law, fit_ratio_law
from adapt.planner.plan import PilotSet, PlanSpec, make_plan
from adapt.planner.plan_file import write_plan
from adapt.planner.synthetic import LawSurface, SaturatingSurface, largest_tolerated, sample_pilots

RATIOS = [0.0, 0.25, 0.5, 0.75, 0.9, 1.0]


def plan(data, epsilon=0.05, target=1e6, bootstrap=4, **kw):
    return make_plan(data, PlanSpec(target_tokens=target, epsilon=epsilon, bootstrap=bootstrap, **kw))


def test_importing_the_planner_does_not_load_torch():
    code = ("import sys, adapt.planner.plan, adapt.planner.plan_file, adapt.planner.synthetic; "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_token_and_ratio_laws_recover_their_parameters():
    t = np.linspace(0.1, 1, 12)
    fit = fit_power_law(t, 0.4 * t ** -0.5 - 0.9)
    assert fit.params == pytest.approx({"alpha": 0.4, "s": -0.5, "beta": -0.9}, abs=1e-4)
    rise_then_fall = -0.05 * t ** -1.0 + 0.3 * t ** -0.2 - 0.1
    general = fit_general_law(t, rise_then_fall)
    assert general.form == "two_power" and general.r2 > 0.99999
    r = np.array(RATIOS)
    assert fit_ratio_law(r, 0.3 * r ** 1.5 + 0.01).params == pytest.approx({"alpha": 0.3, "s": 1.5, "beta": 0.01}, abs=1e-4)


def test_ratio_law_falls_back_to_the_log_form_at_its_exponent_bound():
    r = np.array([0.0, 0.5, 1.0])
    fit = fit_ratio_law(r, np.array([0.0, 0.0, 1.0]))  # a step: the exponent runs to its bound
    assert fit.form == "ratio_log" and "fell back" in fit.notes[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cmr_within_0_02_of_the_truth_on_law_data_with_1_percent_noise(seed):
    truth = LawSurface()
    true_cmr = cmr_at(truth, 1.0, token_grid(0.1, 1.0), 0.05, 100.0).cmr
    result = plan(sample_pilots(truth, RATIOS, seed=seed))
    assert abs(result["ratio"] - true_cmr) <= 0.02, (result["ratio"], true_cmr)
    assert result["quality"]["verdict"] == "good", result["quality"]
    assert result["interval"]["low"] <= result["ratio"] <= result["interval"]["high"]


def test_extrapolation_to_four_times_the_pilot_budget():
    truth = LawSurface()
    true_cmr = cmr_at(truth, 4.0, token_grid(0.1, 4.0), 0.05, 100.0).cmr
    result = plan(sample_pilots(truth, RATIOS), target=4e6)
    assert result["method"] == "cmr-law" and len(result["cmr_by_budget"]) == 8
    assert abs(result["ratio"] - true_cmr) <= 0.05, (result["ratio"], true_cmr)


@pytest.mark.parametrize("epsilon", [0.02, 0.05, 0.1])
@pytest.mark.parametrize("seed", [0, 1])
def test_saturating_curves_give_the_largest_tolerated_ratio_or_a_poor_fit(epsilon, seed):
    truth = SaturatingSurface()
    result = plan(sample_pilots(truth, RATIOS, seed=seed), epsilon=epsilon)
    error = abs(result["ratio"] - largest_tolerated(truth, 1.0, epsilon))
    assert error <= 0.05 or result["quality"]["verdict"] == "poor", (error, result["quality"])


def test_the_lagrangian_constraint_is_stricter_where_forgetting_still_grows():
    data = sample_pilots(SaturatingSurface(), RATIOS)
    tolerance, lagrangian = plan(data), plan(data, constraint="lagrangian")
    assert lagrangian["ratio"] < tolerance["ratio"] - 0.05
    assert lagrangian["ratio"] == pytest.approx(tolerance["cmr_by_lambda"]["100.0"])
    assert not tolerance["lagrangian_feasible"] and tolerance["lagrangian_t0"] < 1e6


def test_relative_tolerance_is_a_share_of_the_base_general_loss():
    data = sample_pilots(LawSurface(), RATIOS, base=(3.0, 2.5))
    absolute, relative = plan(data, epsilon=0.05), plan(data, epsilon=0.02, tolerance="relative")
    assert relative["epsilon"] == pytest.approx(0.05)
    assert relative["ratio"] == pytest.approx(absolute["ratio"])


def test_lambda_sweep_and_dcpt_are_reported():
    result = plan(sample_pilots(LawSurface(), RATIOS))
    assert set(result["cmr_by_lambda"]) == {"1.0", "10.0", "100.0", "1000.0", "7000.0"}
    assert result["lagrangian_feasible"] and result["lagrangian_t0"] is None
    # D-CPT's form is not the data's here, so it fits less tightly, but lands near the CMR.
    assert result["dcpt"]["general"]["r2"] > 0.5 and abs(result["dcpt"]["ratio"] - result["ratio"]) < 0.1


def test_no_feasible_ratio_is_an_error_not_a_plan():
    t = np.linspace(0.1, 1, 8)
    forgetting = PilotSet([Pilot(r, t * 1e6, -r * (1 - np.exp(-3 * t)), 0.2 + 0.1 * r * t ** 0.5 + 0.01 * t)
                           for r in RATIOS], 3.0, 2.5)  # the general loss rises by 0.2 even at R = 0
    with pytest.raises(PlannerError, match="no feasible ratio"):
        plan(forgetting)


def test_degenerate_pilots_say_what_to_add():
    data = sample_pilots(LawSurface(), [0.0, 1.0])
    with pytest.raises(PlannerError, match="add pilots at 3 or more ratios"):
        plan(data)
    flat = PilotSet([Pilot(r, [1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 0, 0]) for r in (0, 0.5, 1)], 3.0, 2.5)
    with pytest.raises(PlannerError, match="flat"):
        plan(flat)
    backwards = PilotSet([Pilot(r, [1, 2, 3, 4], [0.1 * r * k for k in range(1, 5)], [0.01] * 4)
                          for r in (0, 0.5, 1)], 3.0, 2.5)
    with pytest.raises(PlannerError, match="domain loss does not fall"):
        plan(backwards)
    short = PilotSet([Pilot(r, [1, 2], [-r, -r], [0, 0]) for r in (0, 0.5, 1)], 3.0, 2.5)
    with pytest.raises(PlannerError, match="eval point"):
        plan(short)


def test_plan_file_is_a_mixture_file_and_never_holds_nan(tmp_path):
    from adapt.recipe.schema import MixtureFile

    result = plan(sample_pilots(LawSurface(), RATIOS), bootstrap=3)
    written = write_plan(tmp_path / "x.plan.yaml", result, "code", "general", "test")
    assert written["mixture"]["code"] == result["ratio"]
    document = MixtureFile.model_validate(yaml.safe_load((tmp_path / "x.plan.yaml").read_text()))
    assert document.mixture["code"] == pytest.approx(result["ratio"], abs=1e-4)
    assert sum(document.mixture.values()) == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="NaN"):
        write_plan(tmp_path / "bad.plan.yaml", {**result, "epsilon": float("nan")}, "code", "general", "test")
    assert not (tmp_path / "bad.plan.yaml").exists()


class _Surface:
    """ΔL_dom = −R·t^0.5 and ΔL_gen = g(R)·ln t: the general loss falls (g < 0) or rises (g > 0)."""

    def __init__(self, slope):
        self.slope = slope

    def domain(self, r, t):
        return -np.asarray(r, dtype=float) * np.sqrt(t)

    def general(self, r, t):
        return self.slope(np.asarray(r, dtype=float)) * np.log(t)


def test_feasible_means_the_lagrangian_still_falls_at_the_budget():
    from adapt.planner.cmr import stopping_tokens

    grid, ratios = token_grid(0.1, 1.0), np.array([0.5])
    recovering = _Surface(lambda r: -0.01 + 0 * r)   # F falls all the way: feasible (T0 = inf)
    forgetting = _Surface(lambda r: 0.05 + 0 * r)    # λ·rise outweighs the domain gain from the start
    assert stopping_tokens(recovering, ratios, grid, 1.0, 0.05, 100.0)[0] == np.inf
    assert stopping_tokens(forgetting, ratios, grid, 1.0, 0.05, 100.0)[0] == pytest.approx(grid[0])
    # Forgetting that grows with R: dF/dln t = R·(λ·0.05·R − √t/2) is negative at the budget (t = 1)
    # for R < 10/λ: at λ = 1 every ratio is feasible, at λ = 100 those up to R = 0.1.
    growing = _Surface(lambda r: 0.05 * r ** 2)
    assert cmr_at(growing, 1.0, grid, 0.05, 1.0).cmr == 1.0
    assert cmr_at(growing, 1.0, grid, 0.05, 100.0).cmr == pytest.approx(0.1, abs=0.01)


def test_refinement_adds_a_pilot_where_the_cmr_falls_between_distant_pilots():
    from adapt.planner.sweep import _refinement

    data = sample_pilots(LawSurface(), [0.0, 0.5, 1.0])
    spec = PlanSpec(target_tokens=1e6, bootstrap=0)
    extra = _refinement(data, spec, [0.0, 0.5, 1.0], gap=0.1)
    assert extra is not None and 0.0 < extra < 0.5
    assert abs(extra - make_plan(data, spec)["ratio"]) < 0.006
    assert _refinement(sample_pilots(LawSurface(), RATIOS), spec, RATIOS, gap=0.3) is None
