"""Problems, prompts, answer extraction and grading for experiments on real questions."""

from slgjax.tasks.bundled import bundled_data_dir, load_aime2025, load_gsm8k
from slgjax.tasks.extraction import (
    canonical_answer,
    extract_answer,
    extract_boxed,
    extract_last_number,
    extract_stated_answer,
    normalize_number,
    parse_answer,
)
from slgjax.tasks.files import load_file
from slgjax.tasks.grading import (
    ProblemVerifier,
    ReasoningGymVerifier,
    Verifier,
    is_correct,
    math_verifier,
)
from slgjax.tasks.problem import Problem
from slgjax.tasks.procedural import SMALL_SETTINGS, load_reasoning_gym
from slgjax.tasks.prompts import DEFAULT_TEMPLATE, encode_prompt, format_question
from slgjax.tasks.registry import TASK_NAMES, load_problems

__all__ = [
    "DEFAULT_TEMPLATE",
    "Problem",
    "ProblemVerifier",
    "ReasoningGymVerifier",
    "SMALL_SETTINGS",
    "TASK_NAMES",
    "Verifier",
    "bundled_data_dir",
    "canonical_answer",
    "encode_prompt",
    "extract_answer",
    "extract_boxed",
    "extract_last_number",
    "extract_stated_answer",
    "format_question",
    "is_correct",
    "load_aime2025",
    "load_file",
    "load_gsm8k",
    "load_problems",
    "load_reasoning_gym",
    "math_verifier",
    "normalize_number",
    "parse_answer",
]
