"""Options and builders shared by the commands that run a live policy: search, sample, demo.

Not a command itself: it registers the task, model, scorer, sampling and
batching options on a parser, and turns parsed options into problems, a
:class:`~slgjax.envs.live.LiveEnvironment` and the settings stored with the
records. Every error a user can cause is raised as
:class:`~slgjax.io.InputError`, which the CLI prints as one line.
"""

import argparse
import dataclasses
import hashlib
import json
import logging
import pathlib

from slgjax.io import InputError

__all__ = [
    "LiveSetup",
    "add_live_arguments",
    "build_live_setup",
    "check_live_options",
    "live_settings",
    "load_task",
    "parse_key_values",
    "sampling_config",
]

logger = logging.getLogger("slgjax.live")

SCORER_NAMES = ("judge", "verifier")
HEAD_SUFFIX = ".safetensors"
# Hex digits of the head file's SHA-256 stored in the settings.
DIGEST_LENGTH = 16
DTYPES = ("float32", "bfloat16")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _escaped(text):
    # Lets a shell user write "\n\n" for a blank line.
    return text.encode("utf-8").decode("unicode_escape")


def parse_key_values(items, *, option: str) -> dict:
    """Parse ``KEY=VALUE`` strings; a value is read as JSON when it parses, else kept as text."""
    out = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise InputError(f"{option} expects KEY=VALUE, got {item!r}.")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def add_live_arguments(parser, *, defaults: dict | None = None):
    """Register the task, model, scorer, sampling and batching options on ``parser``."""
    defaults = defaults or {}
    task = parser.add_argument_group("problems")
    task.add_argument(
        "--task",
        default=defaults.get("task"),
        required="task" not in defaults,
        help="gsm8k, aime2025, rg:<reasoning-gym dataset> or file:<path>",
    )
    task.add_argument(
        "--task-option",
        action="append",
        metavar="KEY=VALUE",
        help="task option, repeatable; rg: tasks need size= and seed= (for example size=20)",
    )
    task.add_argument("--limit", type=_positive_int, help="use only the first LIMIT problems")

    model = parser.add_argument_group("policy and scorer")
    model.add_argument(
        "--model",
        default="default",
        help="policy: 'default' (the bundled SmolLM2-135M-Instruct GGUF), a Hugging Face "
        "model directory or a .gguf file",
    )
    model.add_argument("--dtype", choices=DTYPES, default="float32", help="compute dtype")
    model.add_argument(
        "--scorer",
        default=defaults.get("scorer", "judge"),
        help="'judge' (the policy as LM judge, log-odds of Yes against No), 'verifier' (the "
        "task's answer check, 0 or 1), 'head' (the packaged reward head on the policy's "
        "features, a logit), the path of a .safetensors reward-head file, or the directory of "
        "a reward-model checkpoint. A head builds its features with the template it was "
        "trained on, whatever --template says",
    )
    model.add_argument(
        "--scorer-prompt",
        choices=("message", "question"),
        help="prompt text the scorer sees: the user message or the bare question (default: "
        "question for judge, verifier and a reward head, message for a reward model)",
    )
    model.add_argument(
        "--template",
        help="user message with a {question} field (default: the question, then a request "
        "to end with 'The answer is N.')",
    )
    model.add_argument("--system", help="system message of the policy's chat")

    sampling = parser.add_argument_group("sampling (never read from the checkpoint)")
    sampling.add_argument("--temperature", type=float, default=defaults.get("temperature", 1.0))
    sampling.add_argument("--top-p", type=float, default=defaults.get("top_p", 0.9))
    sampling.add_argument("--top-k", type=int, default=0, help="0 disables top-k")
    sampling.add_argument("--min-p", type=float, default=0.0, help="0 disables min-p")
    sampling.add_argument("--repetition-penalty", type=float, default=1.0)
    sampling.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        default=defaults.get("max_new_tokens", 512),
        help="most tokens of a response, any prefix included",
    )
    sampling.add_argument(
        "--step-string",
        action="append",
        type=_escaped,
        default=None,
        help="a step ends after this string (escapes such as \\n work), repeatable "
        f"(default: {defaults.get('step_strings', [])!r})",
    )
    sampling.add_argument(
        "--step-tokens",
        type=_positive_int,
        default=defaults.get("step_tokens", 100),
        help="a step ends after this many tokens at the latest",
    )
    sampling.add_argument(
        "--stop-string", action="append", type=_escaped, help="a response ends after this string"
    )

    batching = parser.add_argument_group("batching")
    batching.add_argument(
        "--samples-per-prompt",
        type=_positive_int,
        default=defaults.get("samples_per_prompt", 4),
        help="rollouts from one state that share a prefill",
    )
    batching.add_argument(
        "--max-batch-size",
        type=_positive_int,
        default=defaults.get("max_batch_size", 32),
        help="most rows of one sampler call; caps memory",
    )
    batching.add_argument(
        "--score-batch-size",
        type=_positive_int,
        default=defaults.get("score_batch_size", 16),
        help="rows of one scorer call",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the root PRNG key")
    parser.set_defaults(_step_strings_default=tuple(defaults.get("step_strings", ())))


def sampling_config(args):
    """Return the :class:`~slgjax.lm.sampling.SamplingConfig` of the parsed options."""
    from slgjax.lm.sampling import SamplingConfig

    step_strings = args.step_string if args.step_string is not None else args._step_strings_default
    try:
        return SamplingConfig(
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            min_p=args.min_p,
            repetition_penalty=args.repetition_penalty,
            max_new_tokens=args.max_new_tokens,
            stop_strings=tuple(args.stop_string or ()),
            step_strings=tuple(step_strings),
            step_max_tokens=args.step_tokens,
        )
    except ValueError as error:
        raise InputError(str(error)) from error


def load_task(args):
    """Return ``(task_options, problems)`` of the parsed task options."""
    from slgjax.tasks.registry import load_problems

    options = parse_key_values(args.task_option, option="--task-option")
    try:
        problems = load_problems(args.task, limit=args.limit, **options)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:
        raise InputError(f"cannot load task {args.task!r}: {error}") from error
    return options, problems


def _resolve_model(spec: str) -> pathlib.Path:
    from slgjax.lm.embedded import default_policy_path

    if spec == "default":
        try:
            return default_policy_path()
        except FileNotFoundError as error:
            raise InputError(str(error)) from error
    path = pathlib.Path(spec).expanduser()
    if not path.exists():
        raise InputError(
            f"model {spec!r} not found: pass 'default', a Hugging Face model directory "
            "(config.json and safetensors) or a .gguf file."
        )
    return path


def _resolve_scorer(spec: str) -> pathlib.Path | None:
    if spec in SCORER_NAMES:
        return None
    if spec == "head":
        from slgjax.lm.reward_head import REGENERATE_COMMAND, default_reward_head_path

        path = default_reward_head_path()
        if not path.is_file():
            raise InputError(
                f"the packaged reward head {path} is missing; regenerate it with "
                f"`{REGENERATE_COMMAND}`, or pass the path of a .safetensors head file."
            )
        return path
    path = pathlib.Path(spec).expanduser()
    if path.suffix == HEAD_SUFFIX:
        if not path.is_file():
            raise InputError(f"reward head file {spec!r} not found.")
        return path
    if not path.is_dir():
        raise InputError(
            f"unknown scorer {spec!r}: use 'judge', 'verifier', 'head', the path of a "
            ".safetensors reward-head file, or the directory of a reward-model checkpoint "
            "(a sequence classifier with config.json and safetensors)."
        )
    return path


def _is_head(scorer_path: pathlib.Path | None) -> bool:
    return scorer_path is not None and scorer_path.suffix == HEAD_SUFFIX


def _file_digest(path: pathlib.Path) -> str:
    """Return the first hex digits of the file's SHA-256, so records of two heads never mix."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:DIGEST_LENGTH]


@dataclasses.dataclass
class LiveSetup:
    """Inputs of a live command: the problems, the environment and the settings to store.

    Attributes:
      problems: the loaded problems.
      task_options: the task's options, as stored with the records.
      environment: the :class:`~slgjax.envs.live.LiveEnvironment`.
      settings: every environment setting that shapes rewards and responses
        (JSON values).
    """

    problems: list
    task_options: dict
    environment: object
    settings: dict


def check_live_options(args):
    """Resolve and check the model, scorer and sampling options before anything loads.

    Returns:
      ``(model_path, scorer_path, config)``; ``scorer_path`` is None for
      ``judge`` and ``verifier``, a reward-head file for ``head`` or a
      ``.safetensors`` path, and otherwise a reward-model directory.
    """
    model_path = _resolve_model(args.model)
    scorer_path = _resolve_scorer(args.scorer)
    if _is_head(scorer_path) and args.scorer_prompt == "message":
        raise InputError(
            "--scorer-prompt message does not fit a reward head: the head formats the bare "
            "question with its own template. Use --scorer-prompt question or leave it out."
        )
    config = sampling_config(args)
    if args.max_batch_size < args.samples_per_prompt:
        raise InputError(
            f"--max-batch-size {args.max_batch_size} is smaller than --samples-per-prompt "
            f"{args.samples_per_prompt}; one sampler call must hold one prompt's samples."
        )
    return model_path, scorer_path, config


def live_settings(args) -> dict:
    """Return every environment setting that shapes rewards and responses, as JSON values.

    Computed from the options alone, so a record file can be checked against
    them before any model loads.
    """
    from slgjax.lm.scorers import DEFAULT_JUDGE_TEMPLATE
    from slgjax.tasks.prompts import DEFAULT_TEMPLATE

    model_path, scorer_path, config = check_live_options(args)
    settings = {
        "model": args.model,
        "model_path": str(model_path.resolve()),
        "dtype": args.dtype,
        "scorer": args.scorer,
    }
    if args.scorer == "judge":
        settings["judge_template"] = DEFAULT_JUDGE_TEMPLATE
    if scorer_path is not None:
        settings["scorer_path"] = str(scorer_path.resolve())
    if _is_head(scorer_path):
        settings["scorer_sha256"] = _file_digest(scorer_path)
    reward_model = scorer_path is not None and not _is_head(scorer_path)
    settings.update(
        {
            "scorer_prompt": args.scorer_prompt or ("message" if reward_model else "question"),
            "template": args.template or DEFAULT_TEMPLATE,
            "system": args.system,
            "sampling": dataclasses.asdict(config),
            "samples_per_prompt": args.samples_per_prompt,
            "max_batch_size": args.max_batch_size,
        }
    )
    return settings


def build_live_setup(args, problems, task_options, *, progress=None) -> LiveSetup:
    """Load the policy (and reward model or reward head) and build the live environment.

    Raises:
      InputError: for an unknown model path or scorer name, a checkpoint or
        head file that does not load or does not fit the policy, or settings
        the environment rejects.
    """
    import jax.numpy as jnp

    from slgjax.envs.live import LiveEnvironment
    from slgjax.lm.checkpoint import load_model
    from slgjax.lm.sampler import Sampler
    from slgjax.lm.scorers import JudgeScorer, RewardModelScorer
    from slgjax.lm.tokenizer import load_tokenizer

    model_path, scorer_path, config = check_live_options(args)
    settings = live_settings(args)
    dtype = jnp.dtype(args.dtype)
    try:
        policy, _ = load_model(model_path, dtype=dtype, param_dtype=dtype)
        tokenizer = load_tokenizer(model_path)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot load the policy from {model_path}: {error}") from error
    logger.info("loaded the policy from %s", model_path)

    if args.scorer == "judge":
        scorer = JudgeScorer(policy, tokenizer, batch_size=args.score_batch_size)
    elif args.scorer == "verifier":
        scorer = None
    elif _is_head(scorer_path):
        from slgjax.lm.reward_head import build_head_scorer

        try:
            scorer = build_head_scorer(
                policy, tokenizer, scorer_path, batch_size=args.score_batch_size
            )
        except (OSError, ValueError) as error:
            raise InputError(f"cannot use the reward head {scorer_path}: {error}") from error
        logger.info("loaded the reward head from %s", scorer_path)
    else:
        try:
            reward_model, _ = load_model(
                scorer_path, dtype=dtype, param_dtype=dtype, head="sequence_classification"
            )
            scorer = RewardModelScorer(
                reward_model, load_tokenizer(scorer_path), batch_size=args.score_batch_size
            )
        except (OSError, ValueError) as error:
            raise InputError(f"cannot load the reward model from {scorer_path}: {error}") from error

    # The sampler sizes each call's cache as its padded prompt length plus
    # max_new_tokens, with prompt lengths padded to powers of two from 64.
    sampler = Sampler(policy, tokenizer, min_bucket=64)
    try:
        environment = LiveEnvironment(
            problems,
            sampler,
            scorer,
            config=config,
            template=settings["template"],
            system=args.system,
            samples_per_prompt=args.samples_per_prompt,
            max_batch_size=args.max_batch_size,
            scorer_prompt=settings["scorer_prompt"],
            progress=progress,
        )
    except ValueError as error:
        raise InputError(str(error)) from error
    return LiveSetup(problems, task_options, environment, settings)
