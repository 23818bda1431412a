"""The evidence experiments run end to end on a tiny synthetic pool file.

The pool file has two problems, each with a root of 16 responses and three
children of 8 responses, and verifier-like 0/1 rewards. Rescoring turns it
into a pool of continuous rewards. Every child pool contains seven correct
responses and one wrong one, so the naive baseline's error is known exactly:
with m = 4 of 8 rewards, the sample mean is 1 or 3/4 while the pool mean is
7/8, an error of 1/8 = sqrt(1/8) pool standard deviations (ddof 1), and every
larger budget is predicted without error.
"""

import gzip
import hashlib
import importlib.util
import json
import math
import pathlib

import jax
import numpy as np
import pytest
from lm_tiny import tiny_causal_lm, tiny_tokenizer

from slgjax.envs.replay import ReplayEnvironment, RewardPool
from slgjax.envs.replay_io import read_replay_jsonl
from slgjax.lm.scorers import JudgeScorer
from slgjax.records import RecordFile
from slgjax.sample_pools import metadata_path, read_pool_metadata
from slgjax.search import run_search

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"
NUM_CHILDREN = 3
ROOT_SIZE = 16
CHILD_SIZE = 8


def _import(name):
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def modules():
    names = ("rescore_pools", "prediction_accuracy", "replay_search", "make_results", "pool_stats")
    return {name: _import(name) for name in names}


class ValueScorer:
    """A continuous scorer that reads the value written at the end of each response."""

    def __init__(self):
        self.calls = 0

    def score(self, prompts, responses):
        self.calls += 1
        return np.array([float(text.rsplit("=", 1)[1]) for text in responses], np.float32)


def _write_pools(path):
    """Two problems; child k of a problem has values in [k, k + 0.5], one response wrong."""
    rng = np.random.default_rng(0)
    settings = {"key": [0, 0], "settings": {"environment": {"scorer_prompt": "question"}}}
    meta = RecordFile(metadata_path(path), settings=settings, key_fields=("problem_id",))
    offset = 0
    with open(path, "wb") as handle:
        for p in range(2):
            problem_id = f"toy_{p}"
            root_correct = rng.random(ROOT_SIZE) < 0.5
            root_correct[:2] = [True, False]
            lines = [
                {
                    "state": problem_id,
                    "prompt": p,
                    "rewards": root_correct.astype(float).tolist(),
                    "correct": root_correct.tolist(),
                    "responses": [
                        f"root {j} value={rng.uniform(0, NUM_CHILDREN):.4f}"
                        for j in range(ROOT_SIZE)
                    ],
                }
            ]
            for k in range(NUM_CHILDREN):
                correct = np.ones(CHILD_SIZE, bool)
                correct[rng.integers(CHILD_SIZE)] = False
                values = k + rng.uniform(0, 0.5, CHILD_SIZE)
                lines.append(
                    {
                        "state": f"{problem_id}#child{k}",
                        "parent": problem_id,
                        "rewards": correct.astype(float).tolist(),
                        "correct": correct.tolist(),
                        "responses": [f"child {k} {j} value={v:.4f}" for j, v in enumerate(values)],
                    }
                )
            text = "".join(json.dumps(line) + "\n" for line in lines).encode()
            handle.write(text)
            states = [{"state": problem_id, "kind": "root", "text": ""}]
            states += [
                {"state": f"{problem_id}#child{k}", "kind": "child", "text": f"step {k}"}
                for k in range(NUM_CHILDREN)
            ]
            meta.append(
                {
                    "problem_id": problem_id,
                    "problem_index": p,
                    "question": f"What is {p} + 1?",
                    "answer": str(p + 1),
                    "states": states,
                    "pool_start": offset,
                    "pool_end": offset + len(text),
                    "pool_sha256": hashlib.sha256(text).hexdigest(),
                }
            )
            offset += len(text)


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pools")
    path = folder / "toy.jsonl"
    _write_pools(path)
    return path


@pytest.fixture(scope="module")
def rescored(pools, modules):
    output = pools.with_name("toy.value.jsonl")
    summary = modules["rescore_pools"].rescore_pools(
        pools,
        output,
        scorer=ValueScorer(),
        tokenizer=tiny_tokenizer(),
        settings={"scorer": "value"},
    )
    return output, summary


@pytest.fixture(scope="module")
def outputs(pools, rescored, modules, tmp_path_factory):
    out = tmp_path_factory.mktemp("evidence")
    common = ["--out", str(out), "--sizes", "4", "--replicates", "3", "--num-resamples", "20"]
    models = ["--models", "empirical_max", "gaussian"]
    verifier = modules["prediction_accuracy"].main(["--pools", str(pools), *common, *models])
    value = modules["prediction_accuracy"].main(["--pools", str(rescored[0]), *common, *models])
    search = modules["replay_search"].main(
        [
            "--pools",
            str(rescored[0]),
            "--out",
            str(out),
            "--budgets",
            "4",
            "16",
            "--replications",
            "2",
            "--groups",
            "main",
            "selection",
            "--synthetic",
            "--synthetic-cells",
            "1:16",
            "--synthetic-prompts",
            "8",
            "--synthetic-replications",
            "2",
            "--simulator-replications",
            "64",
        ]
    )
    page = out / "RESULTS.md"
    modules["make_results"].main(
        ["--inputs", str(out), "--output", str(page), "--plots", str(out / "results")]
    )
    return {"out": out, "verifier": verifier, "value": value, "search": search, "page": page}


def _row(result, model, budget, kind):
    (row,) = [r for r in result["rows"] if (r["model"], r["N"], r["kind"]) == (model, budget, kind)]
    return row


def test_rescore_writes_replay_files(pools, rescored):
    output, summary = rescored
    assert summary["problems"] == 2
    assert summary["responses"] == 2 * (ROOT_SIZE + NUM_CHILDREN * CHILD_SIZE)

    env = read_replay_jsonl(output)
    source = read_replay_jsonl(pools)
    assert env.roots == source.roots
    assert env.children == source.children
    pool = env.pools["toy_0#child2"]
    assert pool.responses is None
    np.testing.assert_array_equal(pool.correct, source.pools["toy_0#child2"].correct)
    expected = [float(t.rsplit("=", 1)[1]) for t in source.pools["toy_0#child2"].responses]
    np.testing.assert_allclose(pool.rewards, expected, rtol=1e-6)

    records = read_pool_metadata(output)
    assert [r["problem_id"] for r in records] == ["toy_0", "toy_1"]
    data = output.read_bytes()
    for record in records:
        segment = data[record["pool_start"] : record["pool_end"]]
        assert hashlib.sha256(segment).hexdigest() == record["pool_sha256"]


def test_rescore_side_files(pools, rescored):
    output, _ = rescored
    source = read_replay_jsonl(pools)
    with gzip.open(output.with_name(output.name + ".responses.jsonl.gz"), "rt") as handle:
        lines = [json.loads(line) for line in handle]
    assert lines[0]["responses"] == list(source.pools["toy_0"].responses)

    with gzip.open(output.with_name(output.name + ".tokens.json.gz"), "rt") as handle:
        tokens = json.load(handle)["tokens"]
    tokenizer = tiny_tokenizer()
    text = source.pools["toy_1#child0"].responses[3]
    assert tokens["toy_1#child0"][3] == len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_rescore_resumes_and_repeats(pools, modules, tmp_path):
    rescore = modules["rescore_pools"]
    judge = JudgeScorer(
        tiny_causal_lm(seed=3),
        tiny_tokenizer(),
        template="Q: {prompt}\nA: {response}\nYes or No?",
        batch_size=16,
    )
    first = tmp_path / "a.jsonl"
    part = rescore.rescore_pools(
        pools, first, scorer=judge, tokenizer=tiny_tokenizer(), settings={"s": 1}, max_problems=1
    )
    assert (part["problems"], part["scored"]) == (1, 1)
    assert read_replay_jsonl(first).roots == ["toy_0"]

    rest = rescore.rescore_pools(
        pools, first, scorer=judge, tokenizer=tiny_tokenizer(), settings={"s": 1}
    )
    assert (rest["problems"], rest["scored"]) == (2, 1)
    again = tmp_path / "b.jsonl"
    rescore.rescore_pools(pools, again, scorer=judge, tokenizer=tiny_tokenizer(), settings={"s": 1})
    for suffix in ("", ".responses.jsonl.gz", ".tokens.json.gz"):
        assert (
            first.with_name(first.name + suffix).read_bytes()
            == again.with_name(again.name + suffix).read_bytes()
        ), suffix

    source = read_replay_jsonl(pools)
    texts = list(source.pools["toy_1"].responses)
    direct = judge.score(["What is 1 + 1?"] * len(texts), texts)
    np.testing.assert_allclose(
        read_replay_jsonl(again).pools["toy_1"].rewards, direct, rtol=1e-5, atol=1e-5
    )

    with pytest.raises(ValueError, match="other settings"):
        rescore.rescore_pools(
            pools, first, scorer=judge, tokenizer=tiny_tokenizer(), settings={"s": 2}
        )


def test_empirical_baseline_error_is_exact(outputs):
    result = outputs["verifier"]
    assert _row(result, "empirical_max", 1, "child")["count"] == 3 * 2 * NUM_CHILDREN
    first = _row(result, "empirical_max", 1, "child")
    assert first["mean_abs_error"] == pytest.approx(math.sqrt(1 / 8), rel=1e-5)
    assert first["median_abs_error"] == pytest.approx(math.sqrt(1 / 8), rel=1e-5)
    for budget in (2, 4, 8):
        row = _row(result, "empirical_max", budget, "child")
        assert row["mean_abs_error"] == pytest.approx(0.0, abs=1e-5), budget
    # Every child has the same true value, so no rank correlation is defined.
    assert first["spearman"] is None
    assert _row(result, "empirical_max", 16, "child")["count"] == 0


def test_prediction_ranks_separated_children(outputs):
    result = outputs["value"]
    row = _row(result, "empirical_max", 1, "child")
    assert row["spearman"] == pytest.approx(1.0)
    assert row["spearman_problems"] == 2
    gaussian = _row(result, "gaussian", 16, "root")
    assert gaussian["count"] == 3 * 2
    assert 0.0 <= gaussian["coverage"] <= 1.0

    saved = json.loads((outputs["out"] / "prediction_toy.value.json").read_text())
    assert saved["rows"] == result["rows"]
    assert "| 4 | 1 | empirical_max |" in (outputs["out"] / "prediction_toy.value.md").read_text()


def test_search_best_of_n_uses_whole_root_pool(outputs, rescored):
    result = outputs["search"]
    env = read_replay_jsonl(rescored[0])
    (row,) = [r for r in result["summary"] if (r["algorithm"], r["budget"]) == ("best_of_n", 16)]
    maxima = [env.pools[root].rewards.max() for root in env.roots]
    assert row["best_reward"] == pytest.approx(np.mean(maxima))
    passed = [env.pools[root].correct.any() for root in env.roots]
    assert row["pass_at_n"] == pytest.approx(np.mean(passed))
    assert row["rollouts"] == 16


def test_search_records_runs_that_cannot_run(outputs):
    result = outputs["search"]
    skipped = {(s["algorithm"], s["budget"]): s for s in result["skipped"]}
    assert "prefix" in skipped[("slg_reference", 4)]["reason"]
    assert skipped[("slg_paper", 16)]["error"] == "PoolExhaustedError"
    gains = {(g["algorithm"], g["budget"], g["metric"]) for g in result["gains"]}
    assert ("oracle", 4, "best_reward") in gains


def test_search_fits_sizes_to_pools(outputs):
    # Paper sizes at N = 16 are K = 2, m = 4, which leaves 12 rollouts for a child of 8;
    # K = 3 leaves 8.
    result = outputs["search"]
    (timing,) = [
        t
        for t in result["timings"]
        if (t["algorithm"], t["budget"]) == ("slg_paper[K fits pools]", 16)
    ]
    assert timing["hyperparameters"] == {"num_states": 3, "samples_per_state": 4}
    rows = [r for r in result["summary"] if r["algorithm"] == "slg_paper[K fits pools]"]
    assert [r["rollouts"] for r in rows] == [4, 16]

    saved = json.loads((outputs["out"] / "search_toy.value.json").read_text())
    assert saved["summary"][0].keys() == result["summary"][0].keys()


def test_synthetic_check_rows(outputs):
    rows = outputs["search"]["synthetic"]
    assert [row["algorithm"] for row in rows] == ["slg_paper", "slg_reference", "uniform_split"]
    for row in rows:
        assert (row["t"], row["N"]) == (1.0, 16)
        assert row["replay_verdict"] in ("win", "tie", "loss")
        assert math.isfinite(row["replay_gain"])
        assert math.isfinite(row["simulator_gain"])


def test_results_page(outputs):
    page = outputs["page"].read_text()
    result = outputs["search"]
    (row,) = [r for r in result["summary"] if (r["algorithm"], r["budget"]) == ("best_of_n", 16)]
    assert f"| best_of_n | 16 | {row['best_reward']:.3f}" in page
    assert result["command"] in page
    assert "## Synthetic check of the replay" in page
    assert "Which model predicts best" in page
    for name in ("prediction_toy.png", "search_toy.value.png"):
        path = outputs["out"] / "results" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_ablation_with_both_mechanisms_is_slg_reference(modules):
    rng = np.random.default_rng(1)
    kids = [f"p/s{j}" for j in range(12)]
    pools = {"p": RewardPool(rng.normal(size=12), prefixes=kids)}
    pools.update({kid: RewardPool(rng.normal(size=20) + j / 4) for j, kid in enumerate(kids)})
    env = ReplayEnvironment(pools, roots=["p"], children={"p": kids})
    options = dict(key=jax.random.key(5), budget=24, prompts=[0], num_states=2, samples_per_state=6)

    (expected,) = run_search("slg_reference", env, **options)
    env.reset()
    runs = modules["replay_search"].default_runs()
    (run,) = [run for run in runs if run["label"] == "ablation[prefixes=on,root=on]"]
    switches = {name: run["hyperparameters"][name] for name in ("select_prefixes", "root_fallback")}
    (result,) = run_search(run["algorithm"], env, **switches, **options)
    assert result.best_reward == expected.best_reward
    assert result.trace == expected.trace


def test_best_model_lines_rank_by_error(modules):
    def row(model, budget, kind, error, spearman=None):
        return {
            "model": model,
            "m": 4,
            "N": budget,
            "kind": kind,
            "count": 10,
            "mean_abs_error": error,
            "spearman": spearman,
        }

    result = {
        "sizes": [4],
        "models": ["gaussian", "empirical_max"],
        "rows": [
            row("gaussian", 2, "all", 9.0),
            row("gaussian", 8, "all", 0.2),
            row("gaussian", 16, "all", 0.4),
            row("gaussian", 8, "child", 0.5, 0.9),
            row("empirical_max", 8, "all", 0.1),
            row("empirical_max", 16, "all", 0.7),
            row("empirical_max", 8, "child", 0.5, 0.3),
        ],
    }
    (line,) = modules["make_results"].best_model_lines(result)

    # N = 2 <= m is left out, so gaussian averages 0.3 and the baseline 0.4.
    assert "N = 8 to 16" in line
    assert "best first: gaussian (0.300), empirical_max (0.400)" in line
    assert "gaussian's (mean Spearman 0.90; the naive baseline's is 0.30)" in line


def test_children_against_root_values(modules):
    module = modules["prediction_accuracy"]
    rewards = np.array([[[0.0, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 6.0], [-1.0, -1.0, -1.0, 0.0]]])
    pools = module.PoolArrays(rewards, np.ones_like(rewards, bool), [["r", "a", "b"]], ["r"])
    # At N = 1, V_N is the pool mean: 1.5 for the root, 5.25 and -0.75 for the children.
    truth = rewards.mean(axis=-1)[..., None]

    (row,) = module.children_against_root(pools, truth, module.pool_spread(pools), [1])

    root_sd = np.std([0.0, 1.0, 2.0, 3.0], ddof=1)
    assert row["problems"] == 1
    assert row["child_above_root_share"] == 0.5
    assert row["best_child_above_root_share"] == 1.0
    assert row["mean_child_minus_root"] == pytest.approx((3.75 - 2.25) / 2 / root_sd)


def test_prediction_resumes_from_cells(rescored, modules, tmp_path, monkeypatch):
    module = modules["prediction_accuracy"]
    args = ["--pools", str(rescored[0]), "--out", str(tmp_path), "--sizes", "4"]
    args += ["--replicates", "3", "--num-resamples", "20", "--models", "empirical_max", "gaussian"]
    full = module.main(args)
    cells_path = tmp_path / f"prediction_{full['name']}.cells.jsonl"
    assert not cells_path.exists()

    # An interrupted run: the first cell finishes, the second raises.
    real_predict = module.predict

    class Interrupted(Exception):
        pass

    def stop_at_gaussian(model, *rest, **options):
        if model == "gaussian":
            raise Interrupted
        return real_predict(model, *rest, **options)

    monkeypatch.setattr(module, "predict", stop_at_gaussian)
    with pytest.raises(Interrupted):
        module.main(args)
    assert cells_path.exists()

    # The rerun reads the finished cell back instead of computing it again.
    def fail_on_empirical_max(model, *rest, **options):
        assert model != "empirical_max", "a finished cell was computed again"
        return real_predict(model, *rest, **options)

    monkeypatch.setattr(module, "predict", fail_on_empirical_max)
    resumed = module.main(args)
    assert resumed["rows"] == full["rows"]
    assert not cells_path.exists()


def test_pool_stats_match_pools(rescored, modules):
    rows = dict(modules["pool_stats"].pool_statistics(rescored[0], max_new_tokens=48))
    env = read_replay_jsonl(rescored[0])
    children = [kid for root in env.roots for kid in env.children[root]]
    root_correct = np.concatenate([env.pools[root].correct for root in env.roots])
    child_correct = np.concatenate([env.pools[kid].correct for kid in children])

    assert rows["share correct, root responses"] == f"{root_correct.mean():.3f}"
    assert rows["share correct, child responses"] == f"{child_correct.mean():.3f}"
    assert rows["children with a correct response"] == f"{len(children)} of {len(children)}"
