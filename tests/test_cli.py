"""End-to-end tests of `slgjax predict` and of the file helpers in slgjax.io."""

import csv
import json
import os
import pathlib
import stat

import numpy as np
import pytest

from slgjax import io
from slgjax.cli import main
from slgjax.scaling import empirical_best_of_n

SAMPLE = pathlib.Path(__file__).parent / "data" / "sample_rewards.jsonl"
FAST = ["--resamples", "20", "--budgets", "1,16,256,4096"]


def _records():
    with open(SAMPLE, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream]


def _read_csv(path):
    with open(path, encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    output = folder / "table.csv"
    plot = folder / "curves.png"
    status = main(["predict", str(SAMPLE), *FAST, "--output", str(output), "--plot", str(plot)])
    return status, output, plot


def test_sample_file_size_and_shape():
    records = _records()

    assert os.path.getsize(SAMPLE) < 200_000
    assert len(records) == 16
    assert {len(r["rewards"]) for r in records} == {512}
    assert len({r["prompt"] for r in records}) == 4


def test_predict_writes_table(sample_run):
    status, output, _ = sample_run
    rows = _read_csv(output)

    assert status == 0
    assert len(rows) == 16 * 4
    assert list(rows[0]) == (
        "prompt state model m pool N predicted lower upper empirical status".split()
    )


def test_predict_empirical_column_matches_pool(sample_run):
    _, output, _ = sample_run
    rows = _read_csv(output)
    first = _records()[0]

    expected = np.asarray(
        empirical_best_of_n(np.asarray(first["rewards"]), n=np.array([1, 16, 256]))
    )

    mine = [r for r in rows if r["prompt"] == first["prompt"] and r["state"] == first["state"]]
    np.testing.assert_allclose([float(r["empirical"]) for r in mine[:3]], expected, rtol=1e-5)
    assert mine[3]["empirical"] == "nan"  # N = 4096 exceeds the pool of 512


def test_predict_band_brackets_prediction(sample_run):
    _, output, _ = sample_run
    rows = _read_csv(output)

    for row in rows:
        assert float(row["lower"]) <= float(row["predicted"]) <= float(row["upper"])


def test_predict_writes_png(sample_run):
    _, _, plot = sample_run

    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_prints_table(capsys):
    status = main(["predict", str(SAMPLE), "--band", "0", "--budgets", "4,64"])

    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 0
    assert lines[0].split()[:5] == ["prompt", "state", "m", "pool", "N"]
    assert len(lines) == 1 + 16 * 2


def test_predict_json_output(tmp_path):
    output = tmp_path / "table.json"

    status = main(
        ["predict", str(SAMPLE), "--band", "0", "--budgets", "4,64", "--output", str(output)]
    )

    rows = json.loads(output.read_text())
    assert status == 0
    assert len(rows) == 32
    assert rows[0]["lower"] is None


def test_random_subset_is_seeded(tmp_path):
    paths = [tmp_path / f"run{i}.csv" for i in range(3)]
    arguments = ["predict", str(SAMPLE), "--band", "0", "--budgets", "4,64"]

    main([*arguments, "--subset", "random", "--seed", "3", "--output", str(paths[0])])
    main([*arguments, "--subset", "random", "--seed", "3", "--output", str(paths[1])])
    main([*arguments, "--output", str(paths[2])])

    first, again, plain = (_read_csv(p) for p in paths)
    assert first == again
    assert [r["predicted"] for r in first] != [r["predicted"] for r in plain]


def test_csv_input_equals_jsonl(tmp_path):
    records = _records()[:3]
    jsonl = tmp_path / "three.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    table = tmp_path / "three.csv"
    with open(table, "w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["question", "node", "score"])
        for record in records:
            for reward in record["rewards"]:
                writer.writerow([record["prompt"], record["state"], reward])
    outputs = [tmp_path / "from_jsonl.csv", tmp_path / "from_csv.csv"]

    main(["predict", str(jsonl), "--band", "0", "--output", str(outputs[0])])
    fields = ["--prompt-field", "question", "--state-field", "node", "--rewards-field", "score"]
    main(["predict", str(table), "--band", "0", "--output", str(outputs[1]), *fields])

    assert _read_csv(outputs[0]) == _read_csv(outputs[1])


def test_missing_file_is_reported(tmp_path, capsys):
    status = main(["predict", str(tmp_path / "absent.jsonl")])

    assert status == 2
    assert "file not found" in capsys.readouterr().err


def test_unknown_field_lists_available(capsys):
    status = main(["predict", str(SAMPLE), "--rewards-field", "scores"])

    error = capsys.readouterr().err
    assert status == 2
    assert "'scores' not found" in error
    assert "available fields: family, params, prompt, rewards, state" in error


def test_empty_file_is_reported(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")

    status = main(["predict", str(empty)])

    assert status == 2
    assert "no rewards" in capsys.readouterr().err


def test_too_few_rewards_is_reported(capsys):
    status = main(["predict", str(SAMPLE), "--m", "600"])

    error = capsys.readouterr().err
    assert status == 2
    assert "16 state(s) contain fewer than --m 600 rewards" in error
    assert "lower --m to at most 512" in error


def test_non_finite_reward_is_reported(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "state": "s", "rewards": [0.1, NaN, 0.3]}\n')

    status = main(["predict", str(bad)])

    assert status == 2
    assert "line 1, rewards[1] is nan" in capsys.readouterr().err


def test_duplicate_state_is_reported(tmp_path, capsys):
    bad = tmp_path / "twice.jsonl"
    bad.write_text('{"prompt": "p", "state": "s", "rewards": [1]}\n' * 2)

    status = main(["predict", str(bad)])

    assert status == 2
    assert "already appeared on line 1" in capsys.readouterr().err


def test_bad_budgets_rejected_by_parser(capsys):
    with pytest.raises(SystemExit):
        main(["predict", str(SAMPLE), "--budgets", "4,0"])

    assert "budgets must be integers >= 1" in capsys.readouterr().err


def test_write_atomic_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")

    def fail(stream):
        stream.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io.write_atomic(target, fail)

    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["table.csv"]


def test_stack_pools_pads_ragged_prompts():
    pools = [
        io.StatePool("a", "s0", np.array([1.0, 2.0])),
        io.StatePool("b", "s0", np.array([3.0])),
        io.StatePool("a", "s1", np.array([4.0, 5.0, 6.0])),
    ]

    rewards, mask, index = io.stack_pools(pools)

    assert rewards.shape == (2, 2, 3)
    assert index == [(0, 0), (1, 0), (0, 1)]
    np.testing.assert_array_equal(mask.sum(axis=-1), [[2, 3], [1, 0]])
    np.testing.assert_array_equal(rewards[0, 1], [4.0, 5.0, 6.0])


def test_write_atomic_gives_the_permissions_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = tmp_path / "atomic.txt"

    io.write_atomic(atomic, lambda stream: stream.write("x"))

    assert stat.S_IMODE(atomic.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
