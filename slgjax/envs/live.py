"""Live environment: a policy LM samples states and responses, a scorer rewards them.

States are :class:`LiveState` values: a problem index and a response prefix in
token ids. The root of problem ``i`` has an empty prefix, and the policy reads
the chat prompt of its question (:func:`slgjax.tasks.prompts.encode_prompt`)
followed by the prefix.

- ``expand`` samples one step from each state. A step ends at the first step
  string of ``config.step_strings`` (such as a blank line) or after
  ``config.step_max_tokens`` tokens, whichever comes first. The child's prefix
  is the parent's prefix plus that step.
- ``rollout`` samples full responses from each state, without the step rule,
  scores each (prompt, response) pair with the scorer and grades it with the
  problem's verifier. A response never exceeds ``config.max_new_tokens``
  tokens in total, prefix included, so responses from deep states cost no
  more tokens than responses from the root. Each response also yields its
  first-step prefix: the state one step below the state it was sampled from,
  found with the same step rule (the reference-code form of SLG uses them).

A state whose prefix is already a complete response (it ended with an
end-of-sequence token or a stop string, or reached ``max_new_tokens``) is
``finished``: its rollouts return that response and its children are copies
of it.

Batching: every request is split into units of ``samples_per_prompt``
rollouts from one state, which share one prefill. Units are grouped into
sampler calls of at most ``max_batch_size`` rows, and the number of prompts
per call is padded to a power of two, so a run compiles only a few programs
per prompt-length bucket. Rows beyond what a unit needs are discarded.

Randomness: each call draws with a key derived from the keys it receives,
so equal keys and requests on a fresh environment give equal results. The
draws of one prompt depend on which other prompts share its call, because
the sampler derives per-row keys from a single key.
"""

import collections
import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import numpy as np

from slgjax.envs.protocol import RolloutBatch
from slgjax.lm.sampler import FinishReason
from slgjax.lm.sampling import SamplingConfig
from slgjax.lm.stops import MatchLabel, build_stop_automaton, token_bytes
from slgjax.tasks.prompts import DEFAULT_TEMPLATE, encode_prompt, format_question

__all__ = ["SCORER_PROMPTS", "LiveEnvironment", "LiveResponse", "LiveState", "LiveStats"]

# Prompt texts a scorer can receive: the user message the policy saw (the
# reward-model convention), or the bare question (shorter judge inputs).
SCORER_PROMPTS = ("message", "question")


class LiveState(NamedTuple):
    """A prompt with a partial response.

    Attributes:
      problem: index of the problem in the environment's list.
      tokens: token ids of the response prefix; empty at the root.
      depth: number of steps from the root.
      finished: True when the prefix is a complete response.
    """

    problem: int
    tokens: tuple[int, ...] = ()
    depth: int = 0
    finished: bool = False


class LiveResponse(NamedTuple):
    """A full response: its token ids (prefix included) and its decoded text."""

    tokens: tuple[int, ...]
    text: str


@dataclasses.dataclass
class LiveStats:
    """Work done by a :class:`LiveEnvironment` since it was built.

    Attributes:
      rollouts: rollouts returned (the budget unit).
      children: states returned by ``expand``.
      sampler_calls: calls of the compiled sampler.
      sampled_rows: rows the sampler computed, padding and discarded rows included.
      scored: responses sent to the scorer; repeated responses are scored once.
      sample_seconds: wall time spent in the sampler.
      score_seconds: wall time spent in the scorer and the verifier.
    """

    rollouts: int = 0
    children: int = 0
    sampler_calls: int = 0
    sampled_rows: int = 0
    scored: int = 0
    sample_seconds: float = 0.0
    score_seconds: float = 0.0


def _next_power_of_two(count: int) -> int:
    return 1 << (count - 1).bit_length()


def _merge_keys(keys: Sequence):
    """Fold the bits of every key after the first into the first one."""
    merged = keys[0]
    for key in keys[1:]:
        if jax.numpy.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.key_data(key)
        for word in np.asarray(key).ravel():
            merged = jax.random.fold_in(merged, int(word))
    return merged


def _check_count(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}.")
    return int(value)


class LiveEnvironment:
    """An :class:`~slgjax.envs.protocol.Environment` backed by a policy LM and a scorer.

    Args:
      problems: :class:`~slgjax.tasks.Problem` objects; ``root(i)`` is the
        prompt of ``problems[i]``.
      sampler: a :class:`~slgjax.lm.sampler.Sampler` of the policy, built with
        its tokenizer.
      scorer: a :class:`~slgjax.lm.scorers.Scorer`, ``score(prompts,
        responses) -> float[n]``; it must return the same score for the same
        pair, because repeated responses are scored once. None makes the
        reward the grade of the problem's verifier.
      config: every sampling setting. ``max_new_tokens`` caps each response,
        prefix included. ``step_strings`` and ``step_max_tokens`` define a
        step (at least one of them is required) and apply to ``expand`` and
        to the first-step prefixes only, never to full rollouts. Nothing is
        read from a checkpoint's generation config.
      template: user message with a ``{question}`` field.
      system: optional system message of the chat.
      samples_per_prompt: rollouts from one state that share one prefill.
      max_batch_size: most rows of one sampler call; caps memory.
      scorer_prompt: ``"message"`` scores against the user message the policy
        saw, ``"question"`` against the bare question.
      max_depth: deepest state the tree searches may expand, or None.
      score_cache_size: most (problem, response) scores kept for reuse.
      progress: optional callback, called with the number of rollouts after
        each rollout request (for a progress bar).

    Raises:
      ValueError: for a config without a step rule, bad sizes, a sampler
        without a tokenizer, or a prompt that leaves no room for
        ``max_new_tokens`` in the sampler's cache.
    """

    def __init__(
        self,
        problems: Sequence,
        sampler,
        scorer,
        *,
        config: SamplingConfig,
        template: str = DEFAULT_TEMPLATE,
        system: str | None = None,
        samples_per_prompt: int = 4,
        max_batch_size: int = 32,
        scorer_prompt: str = "message",
        max_depth: int | None = None,
        score_cache_size: int = 4096,
        progress: Callable[[int], None] | None = None,
    ):
        if not isinstance(config, SamplingConfig):
            raise ValueError(f"config must be a SamplingConfig, got {type(config).__name__}.")
        if not config.step_strings and config.step_max_tokens is None:
            raise ValueError(
                "config defines no step: set step_strings (for example ('\\n\\n',)) or "
                "step_max_tokens, which make the intermediate states of the search."
            )
        if sampler.tokenizer is None:
            raise ValueError("the sampler has no tokenizer; build it with the policy's tokenizer.")
        if scorer is not None and not callable(getattr(scorer, "score", None)):
            raise ValueError(f"scorer {type(scorer).__name__} has no score(prompts, responses).")
        if scorer_prompt not in SCORER_PROMPTS:
            raise ValueError(
                f"scorer_prompt={scorer_prompt!r} is unknown; use one of {SCORER_PROMPTS}."
            )
        self.samples_per_prompt = _check_count(samples_per_prompt, "samples_per_prompt")
        self.max_batch_size = _check_count(max_batch_size, "max_batch_size")
        if self.max_batch_size < self.samples_per_prompt:
            raise ValueError(
                f"max_batch_size={max_batch_size} is smaller than samples_per_prompt="
                f"{samples_per_prompt}; one sampler call must hold at least one prompt's samples."
            )
        if max_depth is not None:
            max_depth = _check_count(max_depth, "max_depth")
        self.problems = list(problems)
        if not self.problems:
            raise ValueError("problems is empty; pass at least one problem.")

        self.sampler = sampler
        self.tokenizer = sampler.tokenizer
        self.scorer = scorer
        self.config = config
        self.max_new_tokens = config.max_new_tokens
        self.max_depth = max_depth
        self.progress = progress
        self.stats = LiveStats()
        self._rollout_config = dataclasses.replace(config, step_strings=(), step_max_tokens=None)
        self._score_cache: collections.OrderedDict = collections.OrderedDict()
        self._score_cache_size = _check_count(score_cache_size, "score_cache_size", minimum=0)

        self._prompts = [
            encode_prompt(self.tokenizer, p.question, template=template, system=system)
            for p in self.problems
        ]
        room = sampler.max_length - self.max_new_tokens
        for problem, prompt in zip(self.problems, self._prompts, strict=True):
            if len(prompt) > room:
                raise ValueError(
                    f"the prompt of problem {problem.id!r} has {len(prompt)} tokens, but the "
                    f"sampler's max_length={sampler.max_length} leaves {room} beside "
                    f"max_new_tokens={self.max_new_tokens}; raise max_length or shorten it."
                )
        if scorer_prompt == "message":
            self._scorer_prompts = [
                format_question(p.question, template=template) for p in self.problems
            ]
        else:
            self._scorer_prompts = [p.question for p in self.problems]

        self._step_labels = self._step_transitions = None
        if config.step_strings:
            automaton = build_stop_automaton(
                token_bytes(self.tokenizer, vocab_size=sampler.vocab_size),
                step_strings=config.step_strings,
            )
            self._step_transitions, self._step_labels = automaton.transitions, automaton.labels

    # The Environment protocol.

    def root(self, prompt_index: int) -> LiveState:
        """Return the root state of problem ``prompt_index``: its prompt, no response yet."""
        if not 0 <= int(prompt_index) < len(self.problems):
            raise ValueError(
                f"prompt_index={prompt_index} is out of range; the environment has "
                f"{len(self.problems)} problems."
            )
        return LiveState(int(prompt_index))

    def expand(self, key, states: Sequence[LiveState], num_children: int) -> list[list[LiveState]]:
        """Sample ``num_children`` one-step continuations of each state.

        A child is finished when its step ended the response. The children of
        a finished state are copies of it.
        """
        num_children = _check_count(num_children, "num_children")
        states = [self._check_state(s) for s in states]
        jobs = [(s, num_children) for s in states if not s.finished]
        sampled = [[] for _ in jobs]
        for call in self._sample(key, jobs, self.config):
            for job, samples in call:
                sampled[job].extend(samples)
        sampled = iter(sampled)

        children = []
        for state in states:
            if state.finished:
                children.append([state] * num_children)
                continue
            row = []
            for continuation, reason in next(sampled):
                tokens = state.tokens + tuple(continuation)
                finished = reason in (FinishReason.EOS, FinishReason.STOP) or (
                    len(tokens) >= self.max_new_tokens
                )
                row.append(LiveState(state.problem, tokens, state.depth + 1, finished))
            children.append(row)
        self.stats.children += len(states) * num_children
        return children

    def rollout(self, key, states: Sequence[LiveState], num: int) -> RolloutBatch:
        """Sample ``num`` full responses from each state, score and grade them.

        Returns:
          A :class:`RolloutBatch` with float64 rewards ``[S, num]``,
          :class:`LiveResponse` responses, first-step prefixes as
          :class:`LiveState` and correctness from the problem's verifier.
        """
        return self.rollout_many([key], [states], num)[0]

    def rollout_many(self, keys, groups: Sequence[Sequence[LiveState]], num: int):
        """Roll out ``num`` responses from every state of several groups in shared calls.

        Returns:
          One :class:`RolloutBatch` per group, as :meth:`rollout`.
        """
        if len(keys) != len(groups):
            raise ValueError(f"got {len(keys)} keys for {len(groups)} groups; pass one per group.")
        num = _check_count(num, "num")
        groups = [[self._check_state(s) for s in states] for states in groups]
        states = [s for group in groups for s in group]
        jobs = [(s, num) for s in states if not s.finished]

        # Per state index: num rows of (response, first-step prefix, reward, correct).
        rows = {}
        done = [index for index, state in enumerate(states) if state.finished]
        if done:
            # A complete response is its own rollout; it is scored once.
            scored = self._score([(states[i].problem, states[i].tokens) for i in done])
            for index, (text, reward, correct) in zip(done, scored, strict=True):
                state = states[index]
                rows[index] = [(LiveResponse(state.tokens, text), state, reward, correct)] * num
            self._report(len(done) * num)

        job_rows = [index for index, state in enumerate(states) if not state.finished]
        for call in self._sample(_merge_keys(keys), jobs, self._rollout_config):
            # Score each sampler call's responses together, in full scorer batches.
            drawn = []
            for job, samples in call:
                state = jobs[job][0]
                for continuation, _ in samples:
                    drawn.append((job, state, state.tokens + tuple(continuation), continuation))
            scored = self._score([(state.problem, tokens) for _, state, tokens, _ in drawn])
            for (job, state, tokens, continuation), (text, reward, correct) in zip(
                drawn, scored, strict=True
            ):
                prefix = self._first_step(state, continuation)
                row = rows.setdefault(job_rows[job], [])
                row.append((LiveResponse(tokens, text), prefix, reward, correct))
            self._report(len(drawn))

        batches, position = [], 0
        for group in groups:
            group_rows = [rows[position + index] for index in range(len(group))]
            position += len(group)
            batches.append(
                RolloutBatch(
                    rewards=np.asarray(
                        [[reward for _, _, reward, _ in row] for row in group_rows], np.float64
                    ).reshape(len(group), num),
                    responses=[[response for response, _, _, _ in row] for row in group_rows],
                    prefixes=[[prefix for _, prefix, _, _ in row] for row in group_rows],
                    correct=[[flag for _, _, _, flag in row] for row in group_rows],
                )
            )
        return batches

    def _report(self, count: int):
        self.stats.rollouts += count
        if self.progress is not None:
            self.progress(count)

    # Optional members used by the runner and the pool recorder.

    def decode(self, response: LiveResponse) -> str:
        """Return the text of a response."""
        return response.text

    def num_tokens(self, response: LiveResponse) -> int:
        """Return the number of tokens of a response, its prefix included."""
        return len(response.tokens)

    def state_text(self, state: LiveState) -> str:
        """Return the decoded response prefix of a state (empty at the root)."""
        return self.tokenizer.decode(list(state.tokens), skip_special_tokens=True)

    # Internals.

    def _check_state(self, state) -> LiveState:
        if not isinstance(state, LiveState):
            raise TypeError(f"expected a LiveState, got {type(state).__name__}.")
        if not 0 <= state.problem < len(self.problems):
            raise ValueError(f"state of problem {state.problem} is outside the problem list.")
        return state

    def _sample(self, key, jobs, config):
        """Sample ``count`` continuations of each ``(state, count)`` job, call by call.

        Yields:
          For each sampler call, as it finishes, a list of ``(job, samples)``
          pairs; ``samples`` lists pairs of a continuation's token ids and its
          :class:`~slgjax.lm.sampler.FinishReason`. The samples of one job may
          arrive in several pairs, in order, and add up to its ``count``. A
          continuation is cut where the response would pass ``max_new_tokens``
          (reason ``LENGTH``).
        """
        per_unit = self.samples_per_prompt
        units = []
        for job, (_, count) in enumerate(jobs):
            for start in range(0, count, per_unit):
                units.append((job, min(per_unit, count - start)))
        inputs = [
            self._prompts[jobs[job][0].problem] + list(jobs[job][0].tokens) for job, _ in units
        ]
        # Similar lengths in one call keep its padded prompt bucket small; the
        # sort is stable, so the units of one job stay in order.
        order = sorted(range(len(units)), key=lambda u: len(inputs[u]))
        per_call = self.max_batch_size // per_unit

        for call, start in enumerate(range(0, len(order), per_call)):
            chunk = order[start : start + per_call]
            width = min(_next_power_of_two(len(chunk)), per_call)
            prompts = [inputs[u] for u in chunk] + [inputs[chunk[0]]] * (width - len(chunk))

            began = time.perf_counter()
            generation = self.sampler.generate(
                prompts, key=jax.random.fold_in(key, call), config=config, num_samples=per_unit
            )
            tokens = np.asarray(generation.tokens)
            lengths = np.asarray(generation.lengths)
            reasons = np.asarray(generation.finish_reasons)
            self.stats.sample_seconds += time.perf_counter() - began
            self.stats.sampler_calls += 1
            self.stats.sampled_rows += width * per_unit

            results = []
            for slot, unit in enumerate(chunk):
                job, count = units[unit]
                room = self.max_new_tokens - len(jobs[job][0].tokens)
                samples = []
                for row in range(slot * per_unit, slot * per_unit + count):
                    length, reason = int(lengths[row]), int(reasons[row])
                    if length > room:
                        length, reason = room, int(FinishReason.LENGTH)
                    samples.append((tokens[row, :length].tolist(), reason))
                results.append((job, samples))
            yield results

    def _step_end(self, continuation: Sequence[int]) -> int | None:
        """Return the length of the first step of ``continuation``, or None if it has no end.

        The rule is the sampler's: a step string completed by a token ends the
        step after that token; otherwise ``step_max_tokens`` tokens do.
        """
        limit = self.config.step_max_tokens
        if self._step_labels is not None:
            state = 0
            for index, token in enumerate(continuation[:limit]):
                if self._step_labels[state, token] == MatchLabel.STEP:
                    return index + 1
                state = self._step_transitions[state, token]
        if limit is not None and len(continuation) > limit:
            return limit
        return None

    def _first_step(self, state: LiveState, continuation: Sequence[int]) -> LiveState:
        """Return the state one step below ``state`` on the way to this response."""
        end = self._step_end(continuation)
        if end is None or end >= len(continuation):
            # The response ended inside its first step, so the step is the whole response.
            tokens = state.tokens + tuple(continuation)
            return LiveState(state.problem, tokens, state.depth + 1, finished=True)
        tokens = state.tokens + tuple(continuation[:end])
        finished = len(tokens) >= self.max_new_tokens
        return LiveState(state.problem, tokens, state.depth + 1, finished)

    def _score(self, pairs: Sequence[tuple[int, tuple[int, ...]]]) -> list[tuple[str, float, bool]]:
        """Return ``(text, reward, correct)`` of each ``(problem, response tokens)`` pair.

        Each distinct pair is decoded, scored and graded once; results are
        kept in a bounded cache for later requests.
        """
        began = time.perf_counter()
        cache = self._score_cache
        missing = list(dict.fromkeys(pair for pair in pairs if pair not in cache))
        if missing:
            texts = self.tokenizer.batch_decode(
                [list(tokens) for _, tokens in missing], skip_special_tokens=True
            )
            grades = [
                self.problems[problem].grade(text)
                for (problem, _), text in zip(missing, texts, strict=True)
            ]
            if self.scorer is None:
                rewards = np.asarray(grades, np.float64)
            else:
                prompts = [self._scorer_prompts[problem] for problem, _ in missing]
                rewards = np.asarray(self.scorer.score(prompts, texts), np.float64).reshape(-1)
                if rewards.shape != (len(missing),):
                    raise ValueError(
                        f"scorer returned {rewards.shape[0]} scores for {len(missing)} "
                        "responses; a scorer must return one score per response."
                    )
            fresh = {}
            for pair, text, reward, grade in zip(missing, texts, rewards, grades, strict=True):
                fresh[pair] = (text, float(reward), bool(grade >= 1.0))
            self.stats.scored += len(missing)
        else:
            fresh = {}

        out = []
        for pair in pairs:
            if pair in fresh:
                out.append(fresh[pair])
            else:
                out.append(cache[pair])
                cache.move_to_end(pair)
        for pair, result in fresh.items():
            cache[pair] = result
        while len(cache) > self._score_cache_size:
            cache.popitem(last=False)
        self.stats.score_seconds += time.perf_counter() - began
        return out
