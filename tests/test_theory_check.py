"""The theory-check experiment runs end to end on its reduced grid."""

import csv
import importlib.util
import math
import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "theory_check.py"


@pytest.fixture(scope="module")
def theory_check():
    spec = importlib.util.spec_from_file_location("theory_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(theory_check, tmp_path_factory):
    out = tmp_path_factory.mktemp("theory_check")
    rows = theory_check.main(["--quick", "--out", str(out)])
    return out, rows


def test_quick_run_writes_every_file(quick_run):
    out, _ = quick_run
    names = ["theory_check.csv", "theory_check.md", "regret.png", "gap.png", "amplification.png"]
    for name in names:
        path = out / name
        assert path.is_file(), name
        assert path.stat().st_size > 0, name
    for name in names[2:]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert not list(out.glob("*.tmp"))


def test_quick_run_table_has_every_setting(quick_run, theory_check):
    out, rows = quick_run
    with open(out / "theory_check.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    settings = {(float(row["t"]), int(row["N"])) for row in table}
    grid = theory_check.QUICK
    assert settings == {(t, n) for t in grid.t_values for n in grid.budgets}

    markdown = (out / "theory_check.md").read_text()
    assert markdown.count("\n| ") == len(table) + 1
    assert "SLG reference, t=1" in markdown


def test_quick_run_best_of_n_matches_closed_form(quick_run):
    _, rows = quick_run
    for row in rows:
        assert abs(row["best_of_n_mean"] - row["bon_closed"]) <= 4.0 * row["best_of_n_se"], row


def test_theory_constants(theory_check):
    # gamma(t) is largest at t = 1, where it is sqrt(2) / (8 sqrt(2)) = 1/8.
    assert theory_check.amplification_exponent(1.0) == pytest.approx(0.125)
    assert theory_check.amplification_exponent(0.5) == pytest.approx(
        theory_check.amplification_exponent(2.0)
    )
    bound = theory_check.gap_lower_bound(1.0, 100)
    assert bound == pytest.approx(math.sqrt(2.0) / 8.0 * math.sqrt(math.log(100)))


def test_expected_max_inverse_round_trips(theory_check):
    from slgjax.tail.expected_max import expected_max_std_normal

    inverse = theory_check.ExpectedMaxInverse()
    for budget in (1, 10, 1000, 10**6):
        value = float(expected_max_std_normal(budget))
        assert math.exp(inverse.log_budget(value)) == pytest.approx(budget, rel=1e-3)
    assert inverse.log_budget(-1.0) == -math.inf
    assert inverse.log_budget(100.0) == math.inf
