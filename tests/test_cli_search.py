"""`slgjax search`, `slgjax sample` and `slgjax demo` end to end on a tiny random checkpoint."""

import json

import jax
import numpy as np
import pytest
import safetensors.numpy
from flax import nnx
from lm_tiny import tiny_causal_lm, tiny_config, tiny_tokenizer

from slgjax.cli import build_parser, main
from slgjax.lm.checkpoint import nnx_path_to_hf_name
from slgjax.records import read_records
from slgjax.sample_pools import load_pools, read_pool_metadata
from slgjax.search.driver import run_search

QUESTIONS = [("What is 2+3?", "5"), ("What is 4*4?", "16"), ("What is 10-7?", "3")]
BUDGETS = (6, 8)


def write_checkpoint(directory):
    """Save the tiny random policy as a Hugging Face directory (config, safetensors, tokenizer)."""
    config = tiny_config(max_position_embeddings=512)
    model = tiny_causal_lm(seed=5, max_position_embeddings=512)
    tensors = {}
    for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        name, transpose = nnx_path_to_hf_name(path)
        array = np.asarray(variable.get_value())
        tensors[name] = np.ascontiguousarray(array.T if transpose else array)
    directory.mkdir(parents=True, exist_ok=True)
    safetensors.numpy.save_file(tensors, directory / "model.safetensors")
    raw = {
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim,
        "rope_theta": config.rope_theta,
        "rms_norm_eps": config.rms_norm_eps,
        "tie_word_embeddings": True,
        "max_position_embeddings": config.max_position_embeddings,
        "eos_token_id": list(config.eos_token_ids),
        "pad_token_id": config.pad_token_id,
        "hidden_act": "silu",
    }
    (directory / "config.json").write_text(json.dumps(raw))
    tiny_tokenizer().save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("live")
    model = write_checkpoint(root / "policy")
    dataset = root / "problems.jsonl"
    with open(dataset, "w", encoding="utf-8") as handle:
        for question, answer in QUESTIONS:
            handle.write(json.dumps({"question": question, "answer": answer}) + "\n")
    return root, model, dataset


def live_args(model, dataset, *extra):
    return [
        "--task",
        f"file:{dataset}",
        "--model",
        str(model),
        "--max-new-tokens",
        "10",
        "--step-tokens",
        "3",
        "--step-string",
        "\\n\\n",
        "--samples-per-prompt",
        "2",
        "--max-batch-size",
        "8",
        "--score-batch-size",
        "8",
        "--seed",
        "3",
        *extra,
    ]


def search_args(model, dataset, output, *extra):
    return [
        "search",
        *live_args(model, dataset),
        "--budgets",
        ",".join(map(str, BUDGETS)),
        "--algorithms",
        "best_of_n,slg=slg_reference,slg_paper",
        "--num-states",
        "2",
        "--samples-per-state",
        "2",
        "--output",
        str(output),
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="module")
def search_run(files):
    root, model, dataset = files
    output = root / "records.jsonl"
    status = main(search_args(model, dataset, output, "--plot", str(root / "plot.png")))
    return status, output


def test_search_writes_every_record(search_run, files):
    status, output = search_run
    assert status == 0
    header, records = read_records(output)
    keys = {(r["problem_id"], r["algorithm"], r["budget"]) for r in records}
    assert len(records) == len(keys) == 3 * 3 * len(BUDGETS)
    assert {r["algorithm"] for r in records} == {"best_of_n", "slg", "slg_paper"}
    assert (files[0] / "plot.png").stat().st_size > 0

    environment = header["settings"]["environment"]
    assert environment["sampling"]["temperature"] == 1.0
    assert environment["sampling"]["step_strings"] == ["\n\n"]
    assert environment["sampling"]["step_max_tokens"] == 3
    assert environment["scorer"] == "judge"


def test_search_spends_equal_budgets(search_run):
    _, output = search_run
    _, records = read_records(output)
    for record in records:
        assert record["rollouts"] == record["budget"]
        assert record["num_responses"] == record["budget"]
        assert record["best_reward"] is not None
        assert record["tokens"] <= 10 * record["budget"]
        assert record["pass_at_n"] in (0.0, 1.0)


def test_search_resumes_after_interruption(search_run, files, capsys):
    _, model, dataset = files
    _, output = search_run
    lines = output.read_text(encoding="utf-8").splitlines(keepends=True)
    # A crash after some records: the runner appends one durable line per record.
    kept = lines[:-4]
    output.write_text("".join(kept), encoding="utf-8")
    capsys.readouterr()

    assert main(search_args(model, dataset, output)) == 0
    after = output.read_text(encoding="utf-8").splitlines(keepends=True)
    assert after[: len(kept)] == kept
    assert len(after) == len(lines)
    _, records = read_records(output)
    assert len({(r["problem_id"], r["algorithm"], r["budget"]) for r in records}) == 18
    redone = [r for r in records if r["_line"] > len(kept)]
    assert sum(r["rollouts"] for r in redone) > 0
    assert f"{sum(r['rollouts'] for r in redone)} rollouts in" in capsys.readouterr().err


def test_search_rejects_changed_settings(search_run, files, capsys):
    _, model, dataset = files
    _, output = search_run
    status = main(search_args(model, dataset, output, "--temperature", "0.5"))
    assert status == 2
    error = capsys.readouterr().err
    assert "environment.sampling.temperature: 1.0 in the file, 0.5 now" in error


def test_sample_pools_replay(files, capsys):
    root, model, dataset = files
    output = root / "pools.jsonl"
    argv = [
        "sample",
        *live_args(model, dataset),
        "--root-rollouts",
        "4",
        "--prefix-rollouts",
        "2",
        "--num-children",
        "2",
        "--child-rollouts",
        "3",
        "--output",
        str(output),
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "recorded the pools of 3 problems" in capsys.readouterr().out

    replay = load_pools(output)
    assert len(replay.roots) == 3
    for root_state in replay.roots:
        assert replay.pool_size(root_state) == 4
        assert len(replay.children[root_state]) == 4 + 2
    metadata = read_pool_metadata(output)
    assert [m["question"] for m in metadata] == [q for q, _ in QUESTIONS]
    kinds = [state["kind"] for state in metadata[0]["states"]]
    assert kinds == ["root"] + ["prefix"] * 4 + ["child"] * 2

    results = run_search(
        "slg_reference",
        replay,
        key=jax.random.key(0),
        budget=4,
        prompts=[0, 1, 2],
        num_states=1,
        samples_per_state=2,
    )
    assert [r.rollouts_spent for r in results] == [4, 4, 4]
    assert all(isinstance(r.best_response, str) for r in results)

    # A rerun finds every problem recorded and adds nothing.
    assert main(argv) == 0
    assert "recorded the pools of 0 problems" in capsys.readouterr().out

    # A rerun with other settings is rejected before the model loads.
    assert main([*argv, "--child-rollouts", "4"]) == 2
    error = capsys.readouterr().err
    assert "sizes.child_rollouts: 3 in the file, 4 now" in error


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--model", "/no/such/model"], "model '/no/such/model' not found"),
        (["--scorer", "oracle"], "unknown scorer 'oracle'"),
        (["--algorithms", "best_of_m"], "unknown algorithm 'best_of_m'"),
        (["--samples-per-state", "4"], "cannot run at budget N=6"),
        (["--set", "slg.depth=3"], "has no hyperparameter 'depth'"),
        (["--max-batch-size", "1"], "--max-batch-size 1 is smaller than --samples-per-prompt 2"),
        (["--temperature", "-1"], "temperature must be >= 0"),
    ],
)
def test_search_bad_inputs(files, tmp_path, capsys, change, message):
    _, model, dataset = files
    argv = search_args(model, dataset, tmp_path / "out.jsonl")
    for position in range(0, len(change), 2):
        option = change[position]
        if option in argv:
            argv[argv.index(option) + 1] = change[position + 1]
        else:
            argv += change[position : position + 2]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


def test_budget_error_names_the_smallest_budget(files, tmp_path, capsys):
    _, model, dataset = files
    argv = search_args(model, dataset, tmp_path / "out.jsonl", "--samples-per-state", "4")
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "the smallest valid budget is N=12" in error


def test_demo_defaults():
    args = build_parser().parse_args(["demo"])
    assert args.task == "rg:chain_sum"
    assert args.model == "default"
    assert args.scorer == "head"
    assert args.budgets == [16]
    assert "best_of_n" in args.algorithms.split(",")
    assert args.max_new_tokens == 48
    assert args.out == "slgjax-demo"


def test_demo_runs_offline(files, tmp_path, capsys):
    _, model, dataset = files
    out = tmp_path / "demo"
    argv = [
        "demo",
        *live_args(model, dataset),
        "--budgets",
        "6",
        "--samples-per-state",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| algorithm | N | problems | best_reward | pass_at_n | rm_at_1" in printed
    assert "slg_reference" in printed
    assert "best_of_n" in printed
    assert (out / "plot.png").stat().st_size > 0
    assert (out / "table.md").read_text(encoding="utf-8").strip() in printed
    _, records = read_records(out / "records.jsonl")
    assert len(records) == 3 * 3
