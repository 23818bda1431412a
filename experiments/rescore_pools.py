"""Rescore recorded reward pools with a continuous scorer.

``slgjax sample`` records pools with the rewards of one scorer (the 0/1
verifier for the evidence experiments). This script reads such a pool file and
its sidecar (:mod:`slgjax.sample_pools`), scores every recorded response with
another scorer, and writes:

``<output>``
    a pool file in the replay format (:mod:`slgjax.envs.replay_io`) with the
    new rewards; ``parent``, ``prompt``, ``correct`` and ``prefixes`` are kept
    and the responses are left out;
``<output>.meta.jsonl``
    a copy of the sidecar whose byte ranges and SHA-256 digests point into
    ``<output>``, with the scorer's settings added to the header;
``<output>.responses.jsonl.gz``
    the responses, one ``{"state": ..., "responses": [...]}`` line per state,
    so that the uncompressed source pool need not be kept;
``<output>.tokens.json.gz``
    the token count of each response. The counts come from re-encoding the
    decoded response text with the policy tokenizer, not from the sampled
    token ids, so a count can differ from the sampled length by a token where
    the tokenizer merges differently.

Scorers: ``judge`` (:class:`slgjax.lm.scorers.JudgeScorer` on the embedded
SmolLM2-135M-Instruct policy) and ``head`` (the trained reward head,
:func:`slgjax.lm.reward_head.build_head_scorer`). A scorer receives the prompt
text the recording used (the bare question, or the user message when the
sidecar's settings say ``scorer_prompt: message``) and the full response text.

Scores of finished problems go to ``<output>.scores.jsonl``, a record file, as
each problem finishes, so an interrupted run resumes, and ``--max-problems``
splits a long run into parts. Each run writes the outputs for the problems
scored so far, in problem order, each file atomically. Scoring is
deterministic, so a rerun writes identical files.

Speed, measured on 2 CPU cores shared with other jobs: the judge (SmolLM2-135M
in float32, chats of about 120 tokens) scored about 2.2 distinct responses per
second. The first two chain_sum problems had 177 and 397 distinct responses
among their 768, so rescoring 30 such problems is an estimated hour there.

Run from the repository root::

    python experiments/rescore_pools.py --pools experiments/data/pools/chain_sum_3002.jsonl \\
        --scorer judge --output experiments/data/pools/chain_sum_3002.judge.jsonl
"""

import argparse
import gzip
import hashlib
import io
import json
import logging
import math
import os
import pathlib
import time

import numpy as np

from slgjax.io import write_atomic
from slgjax.records import ConfigMismatchError, CorruptRecordError, RecordFile, read_records
from slgjax.sample_pools import metadata_path
from slgjax.tasks.prompts import DEFAULT_TEMPLATE, format_question

LOG = logging.getLogger("rescore_pools")

SCORERS = ("judge", "head")
# Fields of a source line that the rescored pool keeps; responses go to their own file.
KEPT_FIELDS = ("parent", "prompt", "correct", "prefixes")


def scores_path(output) -> pathlib.Path:
    """Return the resume file ``<output>.scores.jsonl`` of an output pool."""
    output = pathlib.Path(output)
    return output.with_name(output.name + ".scores.jsonl")


def responses_path(output) -> pathlib.Path:
    """Return ``<output>.responses.jsonl.gz``."""
    output = pathlib.Path(output)
    return output.with_name(output.name + ".responses.jsonl.gz")


def tokens_path(output) -> pathlib.Path:
    """Return ``<output>.tokens.json.gz``."""
    output = pathlib.Path(output)
    return output.with_name(output.name + ".tokens.json.gz")


def read_source(path) -> tuple[dict, list[dict]]:
    """Return the sidecar header and, per finished problem, its record and pool lines.

    Only the byte range of each finished problem is read, so a pool file that
    is still being recorded can be read while it grows.

    Returns:
      ``(header, problems)``; each problem is ``{"record": sidecar record,
      "digest": SHA-256 of its lines, "lines": [parsed JSON line, ...]}``.

    Raises:
      CorruptRecordError: when a problem's lines do not match the digest its
        sidecar record stores.
    """
    path = pathlib.Path(path)
    header, records = read_records(metadata_path(path))
    end = max((record["pool_end"] for record in records), default=0)
    with open(path, "rb") as handle:
        data = handle.read(end)

    problems = []
    for record in records:
        segment = data[record["pool_start"] : record["pool_end"]]
        digest = hashlib.sha256(segment).hexdigest()
        if digest != record["pool_sha256"]:
            raise CorruptRecordError(
                f"{path}: the lines of problem {record['problem_id']!r} do not match the "
                f"SHA-256 in {metadata_path(path)}; the pool file was changed after recording."
            )
        lines = [json.loads(text) for text in segment.decode("utf-8").splitlines() if text]
        problems.append({"record": record, "digest": digest, "lines": lines})
    return header, problems


def scorer_prompt(header: dict, record: dict) -> str:
    """Return the prompt text the recording's scorer received for one problem."""
    environment = header["settings"].get("settings", {}).get("environment", {})
    if environment.get("scorer_prompt", "question") == "message":
        template = environment.get("template") or DEFAULT_TEMPLATE
        return format_question(record["question"], template=template)
    return record["question"]


def score_problem(scorer, prompt: str, lines: list[dict]) -> dict[str, list]:
    """Score every response of one problem; repeated responses are scored once.

    Returns:
      ``{state: [score or None, ...]}``; None marks a non-finite score.
    """
    texts = []
    for line in lines:
        if line.get("responses") is None:
            raise ValueError(
                f"state {line['state']!r} has no recorded responses, so it cannot be rescored; "
                "record the pools with responses (slgjax sample stores them)."
            )
        texts.extend(str(text) for text in line["responses"])
    unique = list(dict.fromkeys(texts))
    values = np.asarray(scorer.score([prompt] * len(unique), unique), np.float64).reshape(-1)
    if values.shape != (len(unique),):
        raise ValueError(
            f"the scorer returned {values.size} scores for {len(unique)} responses; it must "
            "return one per response."
        )
    by_text = {
        text: float(value) if math.isfinite(value) else None
        for text, value in zip(unique, values, strict=True)
    }
    return {line["state"]: [by_text[str(text)] for text in line["responses"]] for line in lines}


def _gzip_bytes(text: str) -> bytes:
    # mtime=0 and no file name keep the archive byte-identical across reruns.
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as handle:
        handle.write(text.encode("utf-8"))
    return buffer.getvalue()


def _write_bytes(path, data: bytes):
    write_atomic(path, lambda stream: stream.write(data), binary=True)


def _write_sidecar(path, settings: dict, records: list[dict]):
    """Write a record file through a temporary file in the same folder, then rename it."""
    path = pathlib.Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        sidecar = RecordFile(temporary, settings=settings, key_fields=("problem_id",))
        for record in records:
            sidecar.append(record)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_outputs(
    output, header: dict, problems: list[dict], scores: dict, settings: dict, tokenizer
):
    """Write the rescored pool, its sidecar, the responses and the token counts."""
    output = pathlib.Path(output)
    pool_lines, response_lines, token_counts, records = [], [], {}, []
    offset = 0
    for problem in problems:
        by_state = scores[problem["record"]["problem_id"]]
        text = ""
        for line in problem["lines"]:
            out = {"state": line["state"], "rewards": by_state[line["state"]]}
            out.update({field: line[field] for field in KEPT_FIELDS if field in line})
            text += json.dumps(out, allow_nan=False) + "\n"
            response_lines.append(
                json.dumps({"state": line["state"], "responses": line["responses"]}) + "\n"
            )
            token_counts[line["state"]] = [
                len(tokenizer(str(response), add_special_tokens=False)["input_ids"])
                for response in line["responses"]
            ]
        encoded = text.encode("utf-8")
        record = {
            key: value
            for key, value in problem["record"].items()
            if key not in ("_line", "kind", "config_hash", "checksum")
        }
        record.update(
            pool_start=offset,
            pool_end=offset + len(encoded),
            pool_sha256=hashlib.sha256(encoded).hexdigest(),
        )
        records.append(record)
        pool_lines.append(encoded)
        offset += len(encoded)

    _write_bytes(output, b"".join(pool_lines))
    sidecar_settings = {"source": header["settings"], "rescored": settings}
    _write_sidecar(metadata_path(output), sidecar_settings, records)
    _write_bytes(responses_path(output), _gzip_bytes("".join(response_lines)))
    tokens = {
        "note": "re-encoded from the decoded response text with the policy tokenizer",
        "tokenizer": settings.get("tokenizer"),
        "tokens": token_counts,
    }
    _write_bytes(tokens_path(output), _gzip_bytes(json.dumps(tokens, sort_keys=True) + "\n"))


def rescore_pools(
    source,
    output,
    *,
    scorer,
    tokenizer,
    settings: dict,
    max_problems: int | None = None,
) -> dict:
    """Score the responses of every finished problem of ``source`` and write the outputs.

    Args:
      source: the recorded pool file (its sidecar must exist).
      output: the rescored pool file to write.
      scorer: anything with ``score(prompts, responses) -> float[n]``; it is
        only called for problems without cached scores.
      tokenizer: the policy tokenizer, for the token counts.
      settings: JSON description of the scorer, stored in the resume file and
        in the output sidecar; a resume file with other settings raises.
      max_problems: score at most this many new problems in this run; None
        scores all.

    Returns:
      ``{"problems": problems written, "scored": problems scored in this run,
      "responses": responses scored in this run, "seconds": scoring time}``.

    Raises:
      ConfigMismatchError: when the resume file contains scores of other settings,
        or of lines that changed since they were scored.
    """
    header, problems = read_source(source)
    cache = RecordFile(
        scores_path(output), settings={"scorer": settings}, key_fields=("problem_id",)
    )
    cached = {record["problem_id"]: record for record in cache.records}

    scores, scored, responses, seconds = {}, 0, 0, 0.0
    written = []
    for problem in problems:
        record = problem["record"]
        problem_id = record["problem_id"]
        if problem_id in cached:
            if cached[problem_id]["source_sha256"] != problem["digest"]:
                raise ConfigMismatchError(
                    f"{scores_path(output)} contains scores of problem {problem_id!r} for lines "
                    f"that differ from those in {source} now; delete {scores_path(output)} to "
                    "score again."
                )
            scores[problem_id] = cached[problem_id]["scores"]
            written.append(problem)
            continue
        if max_problems is not None and scored >= max_problems:
            break

        started = time.perf_counter()
        prompt = scorer_prompt(header, record)
        scores[problem_id] = score_problem(scorer, prompt, problem["lines"])
        elapsed = time.perf_counter() - started
        count = sum(len(line["responses"]) for line in problem["lines"])
        cache.append(
            {
                "problem_id": problem_id,
                "source_sha256": problem["digest"],
                "scores": scores[problem_id],
                "seconds": round(elapsed, 3),
            }
        )
        scored, responses, seconds = scored + 1, responses + count, seconds + elapsed
        written.append(problem)
        LOG.info("problem %s: %d responses scored in %.1f s", problem_id, count, elapsed)

    write_outputs(output, header, written, scores, settings, tokenizer)
    return {"problems": len(written), "scored": scored, "responses": responses, "seconds": seconds}


def load_scorer(name: str, *, head_path=None, batch_size: int = 16):
    """Load the embedded policy and return ``(scorer, tokenizer, settings)``."""
    import jax.numpy as jnp

    from slgjax.lm.checkpoint import load_model
    from slgjax.lm.embedded import default_policy_path
    from slgjax.lm.scorers import DEFAULT_JUDGE_TEMPLATE, JudgeScorer
    from slgjax.lm.tokenizer import load_tokenizer

    policy_path = default_policy_path()
    policy, _ = load_model(policy_path, dtype=jnp.float32, param_dtype=jnp.float32)
    tokenizer = load_tokenizer(policy_path)
    settings = {"scorer": name, "policy": policy_path.name, "dtype": "float32"}
    settings["tokenizer"] = policy_path.name

    if name == "judge":
        scorer = JudgeScorer(policy, tokenizer, batch_size=batch_size)
        settings["judge_template"] = DEFAULT_JUDGE_TEMPLATE
        return scorer, tokenizer, settings

    from slgjax.lm.reward_head import build_head_scorer, default_reward_head_path

    path = pathlib.Path(head_path) if head_path is not None else default_reward_head_path()
    scorer = build_head_scorer(policy, tokenizer, path, batch_size=batch_size)
    settings["head_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return scorer, tokenizer, settings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pools", type=pathlib.Path, required=True, help="recorded pool file")
    parser.add_argument("--output", type=pathlib.Path, required=True, help="rescored pool file")
    parser.add_argument("--scorer", choices=SCORERS, required=True, help="scorer of the rewards")
    parser.add_argument(
        "--head-path",
        type=pathlib.Path,
        default=None,
        help="reward-head file for --scorer head (default: the packaged head)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="rows per scorer forward pass")
    parser.add_argument(
        "--max-problems",
        type=int,
        default=None,
        help="score at most this many new problems, then write the outputs and stop",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.head_path is not None and args.scorer != "head":
        parser.error("--head-path only applies to --scorer head.")
    if args.max_problems is not None and args.max_problems < 0:
        parser.error(f"--max-problems {args.max_problems} must be >= 0.")
    if not metadata_path(args.pools).is_file():
        parser.error(f"the sidecar {metadata_path(args.pools)} of --pools is missing.")
    if args.scorer == "head":
        from slgjax.lm.reward_head import REGENERATE_COMMAND, default_reward_head_path

        head = args.head_path or default_reward_head_path()
        if not pathlib.Path(head).is_file():
            parser.error(
                f"the reward head {head} is missing; train it with `{REGENERATE_COMMAND}` or "
                "pass --head-path."
            )

    scorer, tokenizer, settings = load_scorer(
        args.scorer, head_path=args.head_path, batch_size=args.batch_size
    )
    summary = rescore_pools(
        args.pools,
        args.output,
        scorer=scorer,
        tokenizer=tokenizer,
        settings=settings,
        max_problems=args.max_problems,
    )
    LOG.info(
        "wrote %d problems to %s; scored %d problems (%d responses) in %.0f s",
        summary["problems"],
        args.output,
        summary["scored"],
        summary["responses"],
        summary["seconds"],
    )
    return summary


if __name__ == "__main__":
    main()
