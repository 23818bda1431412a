"""Check two-stage SLG against the theory of the two-level Gaussian model.

Model: state means ``mu(s) ~ N(0, 1)``, rewards ``N(mu(s), t^2)``, so
``sigma0 = 1`` and ``t = sigma1 / sigma0``. For each ``t`` and each budget ``N``
from 10^2 to 10^5, the sizes are the paper's (``m = round((ln N)^3 / 5)``,
``K = round(N / 2m)``, from :func:`slgjax.search.budget.paper_allocation`), and
:func:`slgjax.envs.simulated.simulate_search` runs ``R`` replications of
best-of-N (BoN), SLG in the paper's form, SLG in the reference-code form, the
uniform split and the oracle (the whole budget on the best of the prompt and
the ``K`` paper states by true ``V_N``). States are valued with the Gaussian
tail at the exploitation budget (``--horizon remaining``, slgjax's default).

The theory it is compared with (Li, Qian, Mou 2026, arXiv:2602.01485) is
asymptotic:

- regret against the oracle at most ``c log N / sqrt(m)``, vanishing for
  ``m ~ (log N)^3``;
- gap ``V_N(SLG) - V_N(BoN) >= sqrt(2) t / (4 (t + 1)) sigma0 sqrt(log N)``;
- compute amplification ``V_N(SLG) >= V_{N^(1 + gamma)}(BoN)`` with
  ``gamma = sqrt(2) t / (4 (t + 1) sqrt(1 + t^2))``.

BoN is given by its closed form ``V_N = sqrt(1 + t^2) E_N``; the simulated BoN
is reported beside it as a check. The BoN budget that matches a variant's mean
reward, ``N_eq``, inverts that closed form; the table reports its exponent
``ln N_eq / ln N - 1`` next to ``gamma``.

Outputs, under ``--out`` (default ``experiments/out/theory_check``), each
written to a temporary file and renamed: ``theory_check.csv`` (every number),
``theory_check.md`` (the main columns and a win/loss summary),
``regret.png``, ``gap.png`` and ``amplification.png``.

Run: ``python experiments/theory_check.py`` (about 10 minutes on 2 CPU cores),
or ``--quick`` for a reduced grid used by the tests.
"""

import argparse
import csv
import dataclasses
import io
import logging
import math
import pathlib
import time

import jax
import numpy as np

from slgjax.envs.simulated import GaussianFamily, simulate_search
from slgjax.io import write_atomic
from slgjax.search.budget import paper_allocation
from slgjax.tail.expected_max import expected_max_std_normal

LOG = logging.getLogger("theory_check")

VARIANTS = ("slg_paper", "slg_reference", "uniform_split")
LABELS = {
    "best_of_n": "BoN",
    "slg_paper": "SLG paper",
    "slg_reference": "SLG reference",
    "uniform_split": "uniform split",
    "oracle": "oracle",
}
# Above this the exact E_N is not tabulated; a larger matching budget is reported as inf.
MAX_LOG_BUDGET = math.log(1e12)


@dataclasses.dataclass(frozen=True)
class Grid:
    t_values: tuple
    budgets: tuple
    max_replications: int
    min_replications: int
    work: float

    def replications(self, budget):
        """Replications at ``budget``: about ``work / N``, clipped to the limits."""
        return int(min(self.max_replications, max(self.min_replications, self.work / budget)))


FULL = Grid(
    t_values=(0.5, 1.0, 2.0, 4.0),
    budgets=(100, 316, 1000, 3162, 10000, 31623, 100000),
    max_replications=20000,
    min_replications=600,
    work=3e7,
)
QUICK = Grid(
    t_values=(1.0, 2.0),
    budgets=(100, 1000),
    max_replications=400,
    min_replications=400,
    work=0.0,
)


def gap_lower_bound(t, budget, sigma0=1.0):
    """``sqrt(2) t / (4 (t + 1)) sigma0 sqrt(log N)``."""
    return math.sqrt(2.0) * t / (4.0 * (t + 1.0)) * sigma0 * math.sqrt(math.log(budget))


def amplification_exponent(t):
    """``gamma(t) = sqrt(2) t / (4 (t + 1) sqrt(1 + t^2))``, largest (1/8) at ``t = 1``."""
    return math.sqrt(2.0) * t / (4.0 * (t + 1.0) * math.sqrt(1.0 + t * t))


class ExpectedMaxInverse:
    """Invert ``n -> E_n`` (expected maximum of n standard normals) by interpolation."""

    def __init__(self, points=4001):
        self.log_n = np.linspace(0.0, MAX_LOG_BUDGET, points)
        self.values = np.asarray(expected_max_std_normal(np.exp(self.log_n)), np.float64)

    def log_budget(self, value):
        """Return ``ln n`` with ``E_n = value``; ``-inf`` below ``E_1 = 0``, inf above the table.

        Values within 1e-6 of ``E_1`` (float32 quadrature error) map to ``n = 1``.
        """
        if value < self.values[0] - 1e-6:
            return -math.inf
        if value > self.values[-1]:
            return math.inf
        return float(np.interp(value, self.values, self.log_n))


def _mean_and_error(values):
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(values.size))


def run_setting(key, t, budget, replications, horizon, inverse):
    """Simulate one ``(t, N)`` and return its row of results."""
    allocation = paper_allocation(budget)
    family = GaussianFamily(mu0=0.0, sigma0=1.0, sigma1=t)
    start = time.perf_counter()
    out = simulate_search(
        key,
        family,
        budget=budget,
        num_states=allocation.num_states,
        samples_per_state=allocation.samples_per_state,
        num_replications=replications,
        horizon=horizon,
    )
    out = {name: np.asarray(values, np.float64) for name, values in out.items()}
    seconds = time.perf_counter() - start

    root_sigma = math.hypot(1.0, t)
    bon_closed = root_sigma * float(expected_max_std_normal(budget))
    row = dict(
        t=t,
        N=budget,
        K=allocation.num_states,
        m=allocation.samples_per_state,
        R=replications,
        bon_closed=bon_closed,
        gap_bound=gap_lower_bound(t, budget),
        gamma=amplification_exponent(t),
        root_fallback=float(out["reference_used_root"].mean()),
        seconds=seconds,
    )
    for name in ("best_of_n", "oracle") + VARIANTS:
        row[f"{name}_mean"], row[f"{name}_se"] = _mean_and_error(out[name])
    for name in ("best_of_n",) + VARIANTS:
        row[f"{name}_regret"], row[f"{name}_regret_se"] = _mean_and_error(out["oracle"] - out[name])
    for name in VARIANTS:
        mean, error = row[f"{name}_mean"], row[f"{name}_se"]
        row[f"{name}_gap"] = mean - bon_closed
        exponents = [
            inverse.log_budget(value / root_sigma) / math.log(budget) - 1.0
            for value in (mean - error, mean, mean + error)
        ]
        row[f"{name}_exponent"] = exponents[1]
        row[f"{name}_exponent_lo"], row[f"{name}_exponent_hi"] = exponents[0], exponents[2]
    return row


def run_grid(grid, seed, horizon):
    """Run every ``(t, N)`` of ``grid``; budgets outside, so ``t`` reuses one compilation."""
    inverse = ExpectedMaxInverse()
    key = jax.random.key(seed)
    rows = []
    for i, budget in enumerate(grid.budgets):
        replications = grid.replications(budget)
        for j, t in enumerate(grid.t_values):
            setting_key = jax.random.fold_in(jax.random.fold_in(key, i), j)
            row = run_setting(setting_key, t, budget, replications, horizon, inverse)
            LOG.info(
                "t=%g N=%d K=%d m=%d R=%d: %.1f s; paper-BoN %.3f, reference-BoN %.3f",
                t,
                budget,
                row["K"],
                row["m"],
                replications,
                row["seconds"],
                row["slg_paper_gap"],
                row["slg_reference_gap"],
            )
            rows.append(row)
    rows.sort(key=lambda row: (row["t"], row["N"]))
    return rows


# Outputs, each written atomically.


def _write_atomic(path, data: bytes):
    write_atomic(path, lambda stream: stream.write(data), binary=True)


def write_csv(rows, path):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    _write_atomic(path, buffer.getvalue().encode())


def _verdict(difference, error):
    if difference > 2.0 * error:
        return "win"
    if difference < -2.0 * error:
        return "loss"
    return "tie"


def markdown_table(rows):
    """Return the main Markdown table (means, gaps, exponents) of ``rows``."""
    header = (
        "| t | N | K | m | R | BoN closed | BoN sim | oracle | paper | reference | uniform "
        "| paper-BoN | ref-BoN | bound | exp paper | exp ref | gamma | root fallback |"
    )
    lines = [header, "|" + "---|" * 18]
    for row in rows:
        cells = [
            f"{row['t']:g}",
            str(row["N"]),
            str(row["K"]),
            str(row["m"]),
            str(row["R"]),
            f"{row['bon_closed']:.3f}",
            f"{row['best_of_n_mean']:.3f}±{row['best_of_n_se']:.3f}",
            f"{row['oracle_mean']:.3f}",
            f"{row['slg_paper_mean']:.3f}±{row['slg_paper_se']:.3f}",
            f"{row['slg_reference_mean']:.3f}±{row['slg_reference_se']:.3f}",
            f"{row['uniform_split_mean']:.3f}±{row['uniform_split_se']:.3f}",
            f"{row['slg_paper_gap']:+.3f}",
            f"{row['slg_reference_gap']:+.3f}",
            f"{row['gap_bound']:.3f}",
            f"{row['slg_paper_exponent']:+.3f}",
            f"{row['slg_reference_exponent']:+.3f}",
            f"{row['gamma']:.3f}",
            f"{row['root_fallback']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_lines(rows):
    """Return one line per variant and ``t``: the budgets where it beats or loses to BoN."""
    lines = []
    for name in VARIANTS:
        for t in sorted({row["t"] for row in rows}):
            verdicts = {"win": [], "tie": [], "loss": []}
            meets_bound = []
            for row in (r for r in rows if r["t"] == t):
                verdict = _verdict(row[f"{name}_gap"], row[f"{name}_se"])
                verdicts[verdict].append(str(row["N"]))
                if row[f"{name}_gap"] >= row["gap_bound"]:
                    meets_bound.append(str(row["N"]))
            parts = [f"{kind} at N={','.join(ns)}" for kind, ns in verdicts.items() if ns]
            bound = ",".join(meets_bound) or "none"
            lines.append(
                f"- {LABELS[name]}, t={t:g}: {'; '.join(parts)}; gap above the lower bound at "
                f"N={bound}."
            )
    return lines


def write_markdown(rows, path, command):
    text = [
        "# Two-stage SLG against the two-level Gaussian theory",
        "",
        f"Generated by `{command}`. sigma0 = 1, mu0 = 0, sigma1 = t; paper sizes "
        "m = round((ln N)^3 / 5), K = round(N / 2m) for every variant. Means ± one "
        "standard error over R replications. `paper-BoN` and `ref-BoN` use the closed "
        "form of BoN; `bound` is sqrt(2) t / (4 (t + 1)) sqrt(log N); `exp` is "
        "ln(N_eq) / ln(N) - 1 for the BoN budget N_eq with the same mean reward, to "
        "compare with gamma(t). `root fallback` is the share of replications where the "
        "reference form kept the budget at the prompt.",
        "",
        markdown_table(rows),
        "",
        "Against BoN (win or loss: the mean differs from the closed form by more than "
        "2 standard errors):",
        "",
        *summary_lines(rows),
        "",
    ]
    _write_atomic(path, "\n".join(text).encode())


def write_plots(rows, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_values = sorted({row["t"] for row in rows})

    def by_t(t, field):
        selected = [row for row in rows if row["t"] == t]
        return np.array([row["N"] for row in selected]), np.array([row[field] for row in selected])

    def save(figure, name):
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        _write_atomic(out_dir / name, buffer.getvalue())

    def panels(title):
        figure, axes = plt.subplots(
            1, len(t_values), figsize=(4.2 * len(t_values), 3.6), squeeze=False
        )
        figure.suptitle(title)
        return figure, axes[0]

    figure, axes = panels("Regret against the oracle (mean ± 2 SE)")
    for axis, t in zip(axes, t_values, strict=True):
        for name in ("best_of_n",) + VARIANTS:
            n, regret = by_t(t, f"{name}_regret")
            _, error = by_t(t, f"{name}_regret_se")
            axis.errorbar(n, regret, yerr=2 * error, marker="o", ms=3, label=LABELS[name])
        n, m = by_t(t, "m")
        axis.plot(n, np.log(n) / np.sqrt(m), "k--", lw=1, label="log N / sqrt(m)")
        axis.axhline(0.0, color="gray", lw=0.5)
        axis.set(xscale="log", xlabel="budget N", title=f"t = {t:g}")
    axes[0].set_ylabel("oracle minus variant")
    axes[-1].legend(fontsize=7)
    save(figure, "regret.png")

    figure, axes = panels("Gain over best-of-N (mean ± 2 SE) and the lower bound")
    for axis, t in zip(axes, t_values, strict=True):
        for name in VARIANTS:
            n, gap = by_t(t, f"{name}_gap")
            _, error = by_t(t, f"{name}_se")
            axis.errorbar(n, gap, yerr=2 * error, marker="o", ms=3, label=LABELS[name])
        n, bound = by_t(t, "gap_bound")
        axis.plot(n, bound, "k--", lw=1, label="lower bound")
        axis.axhline(0.0, color="gray", lw=0.5)
        axis.set(xscale="log", xlabel="budget N", title=f"t = {t:g}")
    axes[0].set_ylabel("V_N(variant) - V_N(BoN)")
    axes[-1].legend(fontsize=7)
    save(figure, "gap.png")

    figure, axes = panels("Matching BoN budget N_eq = N^(1 + exponent)")
    for axis, t in zip(axes, t_values, strict=True):
        for name in ("slg_paper", "slg_reference"):
            n, exponent = by_t(t, f"{name}_exponent")
            _, low = by_t(t, f"{name}_exponent_lo")
            _, high = by_t(t, f"{name}_exponent_hi")
            yerr = np.abs(np.stack([exponent - low, high - exponent]))
            axis.errorbar(n, exponent, yerr=yerr, marker="o", ms=3, label=LABELS[name])
        axis.axhline(amplification_exponent(t), color="k", ls="--", lw=1, label="gamma(t)")
        axis.axhline(0.0, color="gray", lw=0.5)
        axis.set(xscale="log", xlabel="budget N", title=f"t = {t:g}")
    axes[0].set_ylabel("ln N_eq / ln N - 1")
    axes[-1].legend(fontsize=7)
    save(figure, "amplification.png")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="reduced grid: t in {1, 2}, N in {100, 1000}, R = 400"
    )
    parser.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path("experiments/out/theory_check"),
        help="output directory (created if missing)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the PRNG key")
    parser.add_argument(
        "--horizon",
        choices=("remaining", "total"),
        default="remaining",
        help="budget at which states are valued: the exploitation budget or N",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    grid = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = run_grid(grid, args.seed, args.horizon)
    command = "python experiments/theory_check.py" + (" --quick" if args.quick else "")
    if args.seed:
        command += f" --seed {args.seed}"
    if args.horizon != "remaining":
        command += f" --horizon {args.horizon}"

    write_csv(rows, args.out / "theory_check.csv")
    write_markdown(rows, args.out / "theory_check.md", command)
    write_plots(rows, args.out)
    LOG.info("wrote %s in %.0f s", args.out, time.perf_counter() - start)
    return rows


if __name__ == "__main__":
    main()
