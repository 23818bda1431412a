"""Datasets from local files, reasoning-gym problems, the task registry and chat prompts."""

import csv
import importlib.util
import json

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from slgjax.tasks import (
    DEFAULT_TEMPLATE,
    Problem,
    canonical_answer,
    encode_prompt,
    format_question,
    load_aime2025,
    load_file,
    load_gsm8k,
    load_problems,
    load_reasoning_gym,
)

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def gsm8k():
    return load_gsm8k()


def test_gsm8k_count_and_answers(gsm8k):
    assert len(gsm8k) == 1319
    assert gsm8k[0].answer == "18"
    assert gsm8k[0].id == "gsm8k/test/0"
    assert gsm8k[0].metadata["solution"].endswith("#### 18")
    assert len({p.id for p in gsm8k}) == 1319


def test_gsm8k_answers_are_numbers(gsm8k):
    from slgjax.tasks import normalize_number

    assert all(normalize_number(p.answer) is not None for p in gsm8k)
    assert all("," not in p.answer for p in gsm8k)


def test_gsm8k_reference_solution_grades_correct(gsm8k):
    graded = [p.grade(p.metadata["solution"]) for p in gsm8k[:50]]
    assert graded == [1.0] * 50


def test_aime2025_count_and_answers():
    problems = load_aime2025()
    assert len(problems) == 30
    assert problems[0].id == "aime2025/I/1"
    assert problems[-1].id == "aime2025/II/15"
    assert problems[0].answer == "70"
    # One answer is stored as "336^\\circ"; its canonical form is the integer.
    assert problems[19].answer == "336^\\circ"
    assert all(0 <= int(canonical_answer(p.answer)) <= 999 for p in problems)
    assert problems[19].grade("The answer is 336.") == 1.0


def test_reasoning_gym_reproducible_from_seed():
    first = load_reasoning_gym("chain_sum", size=5, seed=3)
    again = load_reasoning_gym("chain_sum", size=5, seed=3)
    other = load_reasoning_gym("chain_sum", size=5, seed=4)
    assert [(p.question, p.answer) for p in first] == [(p.question, p.answer) for p in again]
    assert [p.question for p in first] != [p.question for p in other]
    assert first[0].id == "rg:chain_sum:3:0"
    assert first[0].source == "rg:chain_sum"


def test_reasoning_gym_small_settings():
    problems = load_reasoning_gym("chain_sum", size=20, seed=0)
    for problem in problems:
        assert problem.metadata["settings"]["max_digits"] == 2
        assert abs(int(problem.answer)) < 3 * 100


def test_reasoning_gym_settings_override():
    problems = load_reasoning_gym("chain_sum", size=3, seed=0, max_digits=1)
    assert problems[0].metadata["settings"]["max_digits"] == 1


def test_reasoning_gym_verifier():
    problem = load_reasoning_gym("basic_arithmetic", size=1, seed=7)[0]
    answer = int(problem.answer)
    assert problem.grade(f"So it is {answer}.") == 1.0
    assert problem.grade(f"The answer is \\boxed{{{answer}}}") == 1.0
    assert problem.grade(f"The answer is {answer + 1}.") == 0.0
    assert problem.grade("I cannot tell") == 0.0


def test_reasoning_gym_bad_name():
    with pytest.raises(ValueError, match="not_a_dataset"):
        load_reasoning_gym("not_a_dataset", size=2, seed=0)


def test_reasoning_gym_bad_setting():
    with pytest.raises(ValueError, match="bogus"):
        load_reasoning_gym("chain_sum", size=2, seed=0, bogus=1)


def test_jsonl_custom_fields(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [
        {"uid": "x1", "prompt": "1+1?", "target": 2},
        {"uid": "x2", "prompt": "2+3?", "target": 5},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    problems = load_file(path, question_field="prompt", answer_field="target", id_field="uid")
    assert [p.id for p in problems] == ["file:mine.jsonl/x1", "file:mine.jsonl/x2"]
    assert [p.answer for p in problems] == ["2", "5"]
    assert problems[1].question == "2+3?"


def test_csv_custom_fields(tmp_path):
    path = tmp_path / "mine.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Problem", "Solution", "level"])
        writer.writerow(["What is 6*7?", "42", "easy"])
        writer.writerow(["What is 2/4?", "1/2", "easy"])
    problems = load_file(path, question_field="Problem", answer_field="Solution")
    assert len(problems) == 2
    assert problems[0].answer == "42"
    assert problems[0].metadata == {"level": "easy"}
    assert problems[1].grade("The answer is 0.5") == 1.0


def test_missing_field_lists_columns(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("Problem,Solution\nWhat is 1?,1\n")
    with pytest.raises(ValueError) as error:
        load_file(path)
    assert "'question'" in str(error.value)
    assert "['Problem', 'Solution']" in str(error.value)


def test_missing_field_jsonl_names_line(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n{"question": "b"}\n')
    with pytest.raises(ValueError, match=r"mine.jsonl:2 has no field 'answer'.*\['question'\]"):
        load_file(path)


def test_repeated_id_rejected(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text('{"q": "a", "a": "1", "k": 1}\n{"q": "b", "a": "2", "k": 1}\n')
    with pytest.raises(ValueError, match="repeats"):
        load_file(path, question_field="q", answer_field="a", id_field="k")


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        load_file("/nonexistent/file.jsonl")


def test_saved_dataset_folder(tmp_path):
    if importlib.util.find_spec("datasets") is None:
        with pytest.raises(ImportError, match="pip install datasets"):
            load_file(tmp_path)
        return
    import datasets

    datasets.Dataset.from_dict({"q": ["1+1?"], "a": ["2"]}).save_to_disk(str(tmp_path / "d"))
    problems = load_file(tmp_path / "d", question_field="q", answer_field="a")
    assert problems[0].answer == "2"


def test_registry_names(tmp_path):
    assert len(load_problems("aime2025")) == 30
    assert len(load_problems("gsm8k", limit=4)) == 4
    assert load_problems("rg:chain_sum", size=2, seed=1)[0].id == "rg:chain_sum:1:0"
    path = tmp_path / "t.jsonl"
    path.write_text('{"question": "a", "answer": "1"}\n')
    assert load_problems(f"file:{path}")[0].answer == "1"


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("mmlu", {}, "unknown task"),
        ("rg:chain_sum", {"size": 2}, "seed"),
        ("gsm8k", {"split": "train"}, "no options"),
    ],
)
def test_registry_errors(name, options, message):
    with pytest.raises(ValueError, match=message):
        load_problems(name, **options)


def test_problem_rejects_non_string_answer():
    with pytest.raises(TypeError, match="answer"):
        Problem(id="a", question="q", answer=4, source="s")


def tiny_tokenizer(*, chat_template=CHATML) -> PreTrainedTokenizerFast:
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = chat_template
    return tokenizer


def test_encode_prompt_chat_template():
    tokenizer = tiny_tokenizer()
    question = "What is {x} when x = 2?"
    ids = encode_prompt(tokenizer, question)
    expected = (
        "<|im_start|>user\n" + format_question(question) + "<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.decode(ids) == expected
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 2
    assert "The answer is N." in DEFAULT_TEMPLATE
    assert "{x}" in tokenizer.decode(ids)


def test_encode_prompt_system_and_template():
    tokenizer = tiny_tokenizer()
    ids = encode_prompt(tokenizer, "2+2?", template="Q: {question}", system="Be brief.")
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ: 2+2?")


def test_encode_prompt_errors():
    with pytest.raises(ValueError, match="chat_template"):
        encode_prompt(tiny_tokenizer(chat_template=None), "q")
    with pytest.raises(ValueError, match="question"):
        encode_prompt(tiny_tokenizer(), "q", template="no field")
