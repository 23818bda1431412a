"""`slgjax search --scorer HEAD` on a tiny random checkpoint and a head file written here."""

import hashlib
import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_cli_search import live_args, write_checkpoint

from slgjax.cli import main
from slgjax.lm import reward_head
from slgjax.lm.checkpoint import load_model
from slgjax.lm.reward_head import (
    REGENERATE_COMMAND,
    RewardHead,
    build_head_scorer,
    save_reward_head,
)
from slgjax.lm.tokenizer import load_tokenizer
from slgjax.records import read_records

QUESTIONS = [("What is 2+3?", "5"), ("What is 4*4?", "16")]
METADATA = {"feature_source": "policy", "template": "Q: {question}\nA:", "policy": "tiny"}


def write_head(path, *, feature_dim=32, seed=0):
    head = RewardHead(feature_dim, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed)
    head.output.kernel[...] = jnp.asarray(rng.normal(size=(feature_dim, 1)), jnp.float32)
    save_reward_head(path, head, METADATA)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("head_cli")
    model = write_checkpoint(root / "policy")
    dataset = root / "problems.jsonl"
    with open(dataset, "w", encoding="utf-8") as handle:
        for question, answer in QUESTIONS:
            handle.write(json.dumps({"question": question, "answer": answer}) + "\n")
    return root, model, dataset, write_head(root / "head.safetensors")


def head_search_args(model, dataset, output, scorer, *extra):
    return [
        "search",
        *live_args(model, dataset),
        "--scorer",
        scorer,
        "--budgets",
        "4",
        "--algorithms",
        "best_of_n",
        "--output",
        str(output),
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="module")
def head_run(files):
    root, model, dataset, head = files
    output = root / "records.jsonl"
    status = main(head_search_args(model, dataset, output, str(head)))
    return status, output


def test_search_scores_with_head_file(head_run, files):
    _, model, _, head = files
    status, output = head_run
    assert status == 0
    header, records = read_records(output)

    environment = header["settings"]["environment"]
    assert environment["scorer"] == str(head)
    assert environment["scorer_path"] == str(head.resolve())
    assert environment["scorer_sha256"] == hashlib.sha256(head.read_bytes()).hexdigest()[:16]
    assert environment["scorer_prompt"] == "question"
    assert len(records) == len(QUESTIONS)

    policy, _ = load_model(model)
    scorer = build_head_scorer(policy, load_tokenizer(model), head)
    questions = [QUESTIONS[record["problem_index"]][0] for record in records]
    rescored = scorer.score(questions, [record["best_response"] for record in records])
    np.testing.assert_allclose([r["best_reward"] for r in records], rescored, atol=1e-4)


def test_changed_head_file_is_rejected(head_run, files, capsys):
    root, model, dataset, _ = files
    _, output = head_run
    other = write_head(root / "other" / "head.safetensors", seed=1)
    capsys.readouterr()

    assert main(head_search_args(model, dataset, output, str(other))) == 2
    error = capsys.readouterr().err
    assert "environment.scorer_sha256:" in error


def test_missing_packaged_head_names_the_command(files, tmp_path, capsys, monkeypatch):
    _, model, dataset, _ = files
    missing = tmp_path / "reward_head.safetensors"
    monkeypatch.setattr(reward_head, "default_reward_head_path", lambda: missing)

    assert main(head_search_args(model, dataset, tmp_path / "out.jsonl", "head")) == 2
    error = capsys.readouterr().err
    assert f"the packaged reward head {missing} is missing" in error
    assert REGENERATE_COMMAND in error


@pytest.mark.parametrize(
    ("scorer", "extra", "message"),
    [
        ("/no/such/head.safetensors", [], "reward head file '/no/such/head.safetensors' not found"),
        ("HEAD", ["--scorer-prompt", "message"], "--scorer-prompt message does not fit"),
        ("NARROW", [], "the features have 32 dimensions (source 'policy') but the head expects 8"),
    ],
)
def test_head_bad_inputs(files, tmp_path, capsys, scorer, extra, message):
    _, model, dataset, head = files
    narrow = write_head(tmp_path / "narrow.safetensors", feature_dim=8)
    scorer = {"HEAD": str(head), "NARROW": str(narrow)}.get(scorer, scorer)
    argv = head_search_args(model, dataset, tmp_path / "out.jsonl", scorer, *extra)

    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()
