"""Experiment runner, record files, summaries, plots and pool recording on a fake environment."""

import json
import zlib

import jax
import numpy as np
import pytest
import scipy.stats

from slgjax.envs.protocol import RolloutBatch
from slgjax.envs.replay import ReplayEnvironment, numpy_rng
from slgjax.plots_search import metric_vs_budget_figure
from slgjax.records import ConfigMismatchError, CorruptRecordError, RecordFile, read_records
from slgjax.rollout_log import majority_vote
from slgjax.runner import AlgorithmSpec, ExperimentConfig, run_experiment
from slgjax.sample_pools import (
    PoolSizes,
    load_pools,
    metadata_path,
    read_pool_metadata,
    record_pools,
)
from slgjax.summary import bootstrap_interval, compare_to_baseline, format_table, summarize
from slgjax.tasks import Problem

PROBLEMS = [
    Problem(id="p/a", question="What is 2+3?", answer="5", source="test"),
    Problem(id="p/b", question="What is 4*4?", answer="16", source="test"),
    Problem(id="p/c", question="What is 10-7?", answer="3", source="test"),
]
ALGORITHMS = (
    AlgorithmSpec("bon", "best_of_n"),
    AlgorithmSpec("slg_paper", "slg_paper", {"num_states": 2, "samples_per_state": 4}),
    AlgorithmSpec("slg_ref", "slg_reference", {"num_states": 2, "samples_per_state": 4}),
)
BUDGETS = (16, 24)
THRESHOLD = 0.8


class FakeEnvironment:
    """States are strings; rewards are Gaussian around a mean set by the state's text.

    A response is correct exactly when its reward exceeds THRESHOLD, and its
    text then ends with the reference answer; a wrong response states the
    answer plus 1 or 2. Every draw depends only on the key and the state.
    """

    def __init__(self, problems, *, fail_after=None):
        self.problems = problems
        self.fail_after = fail_after
        self.rollout_calls = 0

    def root(self, prompt_index):
        return f"q{prompt_index}"

    def expand(self, key, states, num_children):
        rng = numpy_rng(key)
        return [[f"{s}/c{rng.integers(10**6)}" for _ in range(num_children)] for s in states]

    def rollout(self, key, states, num):
        self.rollout_calls += 1
        if self.fail_after is not None and self.rollout_calls > self.fail_after:
            raise RuntimeError("simulated crash of the environment")
        rewards, responses, prefixes = [], [], []
        for row, state in enumerate(states):
            rng = numpy_rng(jax.random.fold_in(key, row))
            mean = (zlib.crc32(state.encode()) % 1000) / 1000 - 0.5
            values = rng.normal(mean, 1.0, size=num)
            answer = int(self.problems[int(state.split("/")[0][1:])].answer)
            offsets = rng.integers(1, 3, size=num)
            texts = [
                f"Working on {state}: step {j}. The answer is "
                f"{answer if value > THRESHOLD else answer + int(offsets[j])}."
                for j, value in enumerate(values)
            ]
            rewards.append(values)
            responses.append(texts)
            prefixes.append([f"{state}/p{rng.integers(10**6)}" for _ in range(num)])
        return RolloutBatch(rewards=np.asarray(rewards), responses=responses, prefixes=prefixes)

    def num_tokens(self, response):
        return len(response.split())


def make_config(**changes):
    fields = dict(
        task="file:fake.jsonl",
        algorithms=ALGORITHMS,
        budgets=BUDGETS,
        seed=0,
        environment={"temperature": 0.7, "top_p": 0.9},
    )
    fields.update(changes)
    return ExperimentConfig(**fields)


def strip_timing(records):
    drop = {"wall_time_s", "batch_prompts", "_line"}
    return sorted(
        ({k: v for k, v in r.items() if k not in drop} for r in records),
        key=lambda r: (r["problem_id"], r["algorithm"], r["budget"]),
    )


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("full") / "records.jsonl"
    records = run_experiment(FakeEnvironment(PROBLEMS), PROBLEMS, make_config(), path=path)
    return path, records


def test_runner_writes_every_record(full_run):
    path, records = full_run
    assert len(records) == len(PROBLEMS) * len(ALGORITHMS) * len(BUDGETS)
    header, stored = read_records(path)
    assert header["settings"]["environment"] == {"temperature": 0.7, "top_p": 0.9}
    assert strip_timing(stored) == strip_timing(records)


def test_runner_equal_budgets(full_run):
    _, records = full_run
    for record in records:
        assert record["rollouts"] == record["budget"]
        assert record["num_responses"] == record["budget"]


def test_runner_metrics_match_fake_truth(full_run):
    _, records = full_run
    for record in records:
        # In the fake environment a response is correct iff its reward exceeds THRESHOLD.
        assert record["rm_at_1"] == float(record["best_reward"] > THRESHOLD)
        assert record["pass_at_n"] == float(record["best_reward"] > THRESHOLD)
        assert record["majority_at_n"] in (0.0, 1.0)
        assert record["num_correct"] >= record["pass_at_n"]
        assert record["tokens"] > record["budget"]
        assert record["best_response"].startswith("Working on q")


def test_runner_majority_answer(full_run):
    _, records = full_run
    for record in records:
        answer = PROBLEMS[record["problem_index"]].answer
        majority_correct = record["majority_answer"] == answer
        assert record["majority_at_n"] == float(majority_correct)


def test_runner_results_independent_of_batching(full_run, tmp_path):
    _, records = full_run
    again = run_experiment(
        FakeEnvironment(PROBLEMS),
        PROBLEMS,
        make_config(),
        path=tmp_path / "r.jsonl",
        batch_size=1,
    )
    assert strip_timing(again) == strip_timing(records)


def test_runner_resume_after_crash(full_run, tmp_path):
    _, reference = full_run
    path = tmp_path / "records.jsonl"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_experiment(
            FakeEnvironment(PROBLEMS, fail_after=7),
            PROBLEMS,
            make_config(),
            path=path,
            batch_size=1,
        )
    _, partial = read_records(path)
    assert 0 < len(partial) < len(reference)
    lines_before = path.read_text().splitlines()

    records = run_experiment(FakeEnvironment(PROBLEMS), PROBLEMS, make_config(), path=path)
    _, stored = read_records(path)
    keys = [(r["problem_id"], r["algorithm"], r["budget"]) for r in stored]
    assert len(keys) == len(set(keys)) == len(reference)
    assert path.read_text().splitlines()[: len(lines_before)] == lines_before
    assert strip_timing(records) == strip_timing(reference)


def test_runner_resume_skips_finished(full_run, tmp_path):
    path = tmp_path / "records.jsonl"
    run_experiment(FakeEnvironment(PROBLEMS), PROBLEMS, make_config(), path=path)
    env = FakeEnvironment(PROBLEMS)
    run_experiment(env, PROBLEMS, make_config(), path=path)
    assert env.rollout_calls == 0


def test_runner_adds_budget_to_existing_file(tmp_path):
    path = tmp_path / "records.jsonl"
    run_experiment(FakeEnvironment(PROBLEMS), PROBLEMS, make_config(budgets=(16,)), path=path)
    records = run_experiment(FakeEnvironment(PROBLEMS), PROBLEMS, make_config(), path=path)
    assert len(records) == len(PROBLEMS) * len(ALGORITHMS) * len(BUDGETS)


def test_config_mismatch_names_keys(tmp_path):
    path = tmp_path / "records.jsonl"
    small = make_config(budgets=(16,), algorithms=ALGORITHMS[:1])
    run_experiment(FakeEnvironment(PROBLEMS), PROBLEMS, small, path=path)
    changed = make_config(
        budgets=(16,),
        algorithms=ALGORITHMS[:1],
        seed=1,
        environment={"temperature": 1.0, "top_p": 0.9},
    )
    with pytest.raises(ConfigMismatchError) as error:
        run_experiment(FakeEnvironment(PROBLEMS), PROBLEMS, changed, path=path)
    message = str(error.value)
    assert "environment.temperature: 0.7 in the file, 1.0 now" in message
    assert "seed: 0 in the file, 1 now" in message
    assert "top_p" not in message
    assert "new file" in message


def test_config_mismatch_algorithm_hyperparameters(tmp_path):
    path = tmp_path / "records.jsonl"
    first = make_config(budgets=(16,), algorithms=ALGORITHMS[1:2])
    run_experiment(FakeEnvironment(PROBLEMS), PROBLEMS, first, path=path)
    spec = AlgorithmSpec("slg_paper", "slg_paper", {"num_states": 3, "samples_per_state": 4})
    with pytest.raises(ConfigMismatchError, match="slg_paper.hyperparameters.num_states"):
        run_experiment(
            FakeEnvironment(PROBLEMS),
            PROBLEMS,
            make_config(budgets=(16,), algorithms=(spec,)),
            path=path,
        )


def test_changed_problem_rejected(tmp_path):
    path = tmp_path / "records.jsonl"
    config = make_config(budgets=(16,), algorithms=ALGORITHMS[:1])
    run_experiment(FakeEnvironment(PROBLEMS), PROBLEMS, config, path=path)
    edited = [PROBLEMS[0], Problem(id="p/b", question="What is 4*5?", answer="20", source="test")]
    with pytest.raises(ConfigMismatchError, match="'p/b'"):
        run_experiment(FakeEnvironment(edited), edited, config, path=path)


def corrupt(path, line_number, transform):
    lines = path.read_text().splitlines(keepends=True)
    lines[line_number - 1] = transform(lines[line_number - 1])
    path.write_text("".join(lines))


def test_corrupt_line_reported_with_number(full_run, tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text(full_run[0].read_text())
    corrupt(path, 3, lambda line: line.replace('"budget":16', '"budget":17'))
    with pytest.raises(CorruptRecordError, match="line 3: checksum"):
        run_experiment(FakeEnvironment(PROBLEMS), PROBLEMS, make_config(), path=path)
    assert len(path.read_text().splitlines()) == 1 + 18


def test_cut_last_line_reported(full_run, tmp_path):
    path = tmp_path / "records.jsonl"
    text = full_run[0].read_text()
    path.write_text(text[: len(text) - 40])
    with pytest.raises(CorruptRecordError, match="line 19: the line has no line end"):
        read_records(path)


def test_invalid_json_line_reported(tmp_path):
    path = tmp_path / "records.jsonl"
    store = RecordFile(path, settings={"a": 1}, key_fields=("k",))
    store.append({"k": 1, "value": 2.5})
    store.append({"k": 2, "value": 3.5})
    corrupt(path, 2, lambda line: line[:10] + "\n")
    with pytest.raises(CorruptRecordError, match="line 2: invalid JSON"):
        RecordFile(path, settings={"a": 1}, key_fields=("k",))


def test_record_file_rejects_repeated_key_and_nan(tmp_path):
    store = RecordFile(tmp_path / "r.jsonl", settings={}, key_fields=("k",))
    store.append({"k": 1})
    with pytest.raises(ValueError, match="already has"):
        store.append({"k": 1})
    with pytest.raises(TypeError, match="NaN"):
        store.append({"k": 2, "value": float("nan")})


def test_majority_vote_ties_go_to_first():
    assert majority_vote(["3", None, "4", "4", "3"]) == ("3", 0)
    assert majority_vote(["5", "4", "4"]) == ("4", 1)
    assert majority_vote([None, None]) == (None, None)


def test_bootstrap_matches_t_interval():
    values = np.random.default_rng(0).normal(2.0, 3.0, size=400)
    mean, low, high = bootstrap_interval(values, key=jax.random.key(1), num_resamples=4000)
    t_low, t_high = scipy.stats.t.interval(
        0.95, len(values) - 1, loc=values.mean(), scale=scipy.stats.sem(values)
    )
    assert mean == pytest.approx(values.mean())
    # Over eight keys the width ratio to the t interval stayed within 0.97-1.03.
    assert (high - low) == pytest.approx(t_high - t_low, rel=0.08)
    assert (low + high) / 2 == pytest.approx((t_low + t_high) / 2, abs=0.05)


def test_bootstrap_coverage():
    rng = np.random.default_rng(2)
    covered = 0
    for replication in range(200):
        values = rng.exponential(1.0, size=40)
        _, low, high = bootstrap_interval(
            values, key=jax.random.key(replication), num_resamples=500
        )
        covered += low <= 1.0 <= high
    # Nominal 0.95; skewed data and n = 40 give a little under it. 200 draws: sd ~ 0.016.
    assert 0.86 <= covered / 200 <= 0.99


def test_bootstrap_small_samples():
    assert bootstrap_interval([], key=jax.random.key(0))[1:] == (None, None)
    assert bootstrap_interval([1.0], key=jax.random.key(0)) == (1.0, None, None)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval([1.0, 2.0], key=jax.random.key(0), confidence=1.5)


def test_summary_rows_and_table(full_run):
    _, records = full_run
    rows = summarize(records, key=jax.random.key(0), num_resamples=200)
    assert [(r["budget"], r["algorithm"]) for r in rows] == [
        (b, a) for b in BUDGETS for a in sorted(s.label for s in ALGORITHMS)
    ]
    for row in rows:
        group = [
            r for r in records if (r["algorithm"], r["budget"]) == (row["algorithm"], row["budget"])
        ]
        assert row["best_reward"] == pytest.approx(np.mean([r["best_reward"] for r in group]))
        assert row["best_reward_low"] <= row["best_reward"] <= row["best_reward_high"]
        assert row["num_problems"] == len(PROBLEMS)
    table = format_table(rows)
    assert table.count("\n") == len(rows) + 1
    assert "| bon | 16 | 3 |" in table


def test_compare_to_baseline_is_paired(full_run):
    _, records = full_run
    rows = compare_to_baseline(records, baseline="bon", key=jax.random.key(0), num_resamples=200)
    assert len(rows) == (len(ALGORITHMS) - 1) * len(BUDGETS)
    for row in rows:
        mine = {
            r["problem_id"]: r["best_reward"]
            for r in records
            if (r["algorithm"], r["budget"]) == (row["algorithm"], row["budget"])
        }
        base = {
            r["problem_id"]: r["best_reward"]
            for r in records
            if (r["algorithm"], r["budget"]) == ("bon", row["budget"])
        }
        expected = np.mean([mine[p] - base[p] for p in mine])
        assert row["difference"] == pytest.approx(expected)
    with pytest.raises(ValueError, match="baseline"):
        compare_to_baseline(records, baseline="missing", key=jax.random.key(0))


def test_plot_reward_against_budget(full_run):
    _, records = full_run
    rows = summarize(records, key=jax.random.key(0), num_resamples=100)
    figure = metric_vs_budget_figure(rows, metrics=("best_reward", "pass_at_n"))
    axes = figure.get_axes()
    assert len(axes) == 2
    assert len(axes[0].get_lines()) >= len(ALGORITHMS)
    assert axes[0].get_legend() is not None
    with pytest.raises(ValueError, match="no metric"):
        metric_vs_budget_figure(rows, metrics=("missing",))


SIZES = PoolSizes(root_rollouts=8, prefix_rollouts=4, num_children=2, child_rollouts=4)


def test_pool_recording_reads_as_replay(tmp_path):
    path = tmp_path / "pools.jsonl"
    added = record_pools(
        FakeEnvironment(PROBLEMS),
        PROBLEMS,
        path=path,
        key=jax.random.key(5),
        sizes=SIZES,
        settings={"temperature": 0.7},
    )
    assert added == 3
    replay = load_pools(path)
    assert isinstance(replay, ReplayEnvironment)
    assert replay.roots == [p.id for p in PROBLEMS]
    root = replay.pools["p/a"]
    assert root.size == 8
    assert len(replay.children["p/a"]) == 8 + 2
    assert replay.pools["p/a#child1"].size == 4
    assert root.correct.tolist() == (root.rewards > THRESHOLD).tolist()
    assert root.prefixes[0] == "p/a#prefix0"
    assert root.responses[0].startswith("Working on q0")

    meta = read_pool_metadata(path)
    assert [m["problem_id"] for m in meta] == [p.id for p in PROBLEMS]
    kinds = [s["kind"] for s in meta[0]["states"]]
    assert kinds == ["root"] + ["prefix"] * 8 + ["child"] * 2
    assert meta[0]["states"][1]["text"].startswith("q0/p")


def test_pool_replay_runs_experiment(tmp_path):
    path = tmp_path / "pools.jsonl"
    record_pools(FakeEnvironment(PROBLEMS), PROBLEMS, path=path, key=jax.random.key(5), sizes=SIZES)
    replay = load_pools(path)
    algorithms = (
        AlgorithmSpec("bon", "best_of_n"),
        AlgorithmSpec("slg_ref", "slg_reference", {"num_states": 2, "samples_per_state": 2}),
    )
    config = make_config(algorithms=algorithms, budgets=(6, 8))
    records = run_experiment(replay, PROBLEMS, config, path=tmp_path / "records.jsonl")
    assert len(records) == 12
    for record in records:
        assert record["rollouts"] == record["budget"]
        assert record["rm_at_1"] == float(record["best_reward"] > THRESHOLD)


def test_pool_recording_resumes_after_crash(tmp_path):
    path = tmp_path / "pools.jsonl"
    key = jax.random.key(5)
    reference = tmp_path / "reference.jsonl"
    record_pools(FakeEnvironment(PROBLEMS), PROBLEMS, path=reference, key=key, sizes=SIZES)

    # Each problem makes 3 rollout calls, so the crash hits the second problem.
    with pytest.raises(RuntimeError, match="simulated crash"):
        record_pools(
            FakeEnvironment(PROBLEMS, fail_after=4), PROBLEMS, path=path, key=key, sizes=SIZES
        )
    assert len(read_pool_metadata(path)) == 1
    with open(path, "a") as handle:
        handle.write('{"state": "cut')

    added = record_pools(FakeEnvironment(PROBLEMS), PROBLEMS, path=path, key=key, sizes=SIZES)
    assert added == 2
    assert path.read_text() == reference.read_text()


def test_pool_recording_detects_edits_and_mismatch(tmp_path):
    path = tmp_path / "pools.jsonl"
    key = jax.random.key(5)
    record_pools(FakeEnvironment(PROBLEMS), PROBLEMS[:2], path=path, key=key, sizes=SIZES)
    with pytest.raises(ConfigMismatchError, match="sizes.root_rollouts"):
        record_pools(
            FakeEnvironment(PROBLEMS),
            PROBLEMS,
            path=path,
            key=key,
            sizes=PoolSizes(root_rollouts=4),
        )
    with pytest.raises(ConfigMismatchError, match="same order"):
        record_pools(FakeEnvironment(PROBLEMS), PROBLEMS[::-1], path=path, key=key, sizes=SIZES)

    text = path.read_text()
    path.write_text(text.replace('"p/a#child0"', '"p/a#childX"', 1))
    with pytest.raises(CorruptRecordError, match=r"lines 1-11 \(problem 'p/a'\)"):
        record_pools(FakeEnvironment(PROBLEMS), PROBLEMS, path=path, key=key, sizes=SIZES)
    assert metadata_path(path).name == "pools.jsonl.meta.jsonl"


def test_pool_sizes_validation():
    with pytest.raises(ValueError, match="root_rollouts"):
        PoolSizes(root_rollouts=0)
    with pytest.raises(ValueError, match="both"):
        PoolSizes(root_rollouts=4, num_children=2)


def test_stored_records_are_standard_json(full_run):
    path, _ = full_run
    for line in path.read_text().splitlines():
        json.loads(line, parse_constant=lambda name: pytest.fail(f"non-standard {name}"))


def test_config_loads_task_problems():
    problems = make_config(task="aime2025").load_problems(limit=2)
    assert [p.id for p in problems] == ["aime2025/I/1", "aime2025/I/2"]


def test_config_validation():
    with pytest.raises(ValueError, match="unique"):
        make_config(algorithms=(ALGORITHMS[0], ALGORITHMS[0]))
    with pytest.raises(ValueError, match="budget"):
        make_config(budgets=(0,))
    with pytest.raises(ValueError, match="best_of_m"):
        AlgorithmSpec("x", "best_of_m")
