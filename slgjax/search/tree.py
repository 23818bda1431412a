"""Multi-stage scaling-law guided search over a tree of partial responses.

The two-stage analysis of Li, Qian and Mou (2026, arXiv:2602.01485) extends to
a tree in the authors' prototypes: states are expanded one step at a time
while a fixed share of the budget lasts, and the rest goes to the best node.

- :func:`slg_tree` expands the best leaves level by level (a beam), drops a
  child whose ``V_hat`` falls below its parent's, keeps the parent as a
  "stay" option, and prunes to the ``beam_width`` best nodes.
- :func:`slg_tree_ucb` picks one node to expand at a time by the upper
  confidence score ``V_hat + c sqrt(ln(parent visits + 1) / (visits + 1))``.

Every node is valued from its own ``m`` estimation rollouts. The root estimate
is always made; after it, no expansion starts that would take the tree phase
past ``floor(expand_fraction N)`` rollouts, and no node at ``max_depth`` (nor at
``env.max_depth`` when the environment defines that attribute) is expanded. The final
choice values the candidates at the budget that is actually left. Prompts run
one after another here because their trees grow differently; each decision is
still the compiled decision step.
"""

import dataclasses

import numpy as np

from slgjax.search._common import check_options, decide
from slgjax.search.budget import paper_allocation
from slgjax.search.policies import bucket_size, select_ucb
from slgjax.search.session import SearchSession, TraceStep

__all__ = ["slg_tree", "slg_tree_ucb"]


@dataclasses.dataclass
class _Node:
    state: object
    parent: int | None
    depth: int
    rewards: np.ndarray
    value: float = -np.inf
    visits: int = 0
    expanded: bool = False


def _check_sizes(session, num_children, samples_per_state, expand_fraction, max_depth):
    if samples_per_state is None:
        samples_per_state = paper_allocation(session.budget).samples_per_state
    for name, count in (
        ("num_children", num_children),
        ("samples_per_state", samples_per_state),
        ("max_depth", max_depth),
    ):
        if isinstance(count, bool) or int(count) != count or count < 1:
            raise ValueError(f"{name}={count!r} must be an integer >= 1.")
    if not 0.0 < float(expand_fraction) <= 1.0:
        raise ValueError(
            f"expand_fraction={expand_fraction} must lie in (0, 1]; it is the share of the "
            "budget the tree phase may spend, 0.5 by default."
        )
    if samples_per_state > session.budget:
        raise ValueError(
            f"samples_per_state m={samples_per_state} exceeds the budget N={session.budget}; "
            f"the root estimate alone needs m rollouts, so the smallest valid N is "
            f"{samples_per_state}."
        )
    return int(num_children), int(samples_per_state)


def _depth_limit(session, max_depth):
    """Return ``max_depth`` capped by the environment's own ``max_depth``, if it has one."""
    env_depth = getattr(session.env, "max_depth", None)
    return int(max_depth) if env_depth is None else min(int(max_depth), int(env_depth))


def _grow(session, prompt, nodes, parents, *, num_children, samples, horizon, options, pad):
    """Expand ``parents`` (node indices), estimate the children, return their indices.

    Each parent's value is recomputed beside its children, from the same
    decision step, so that children and parent are compared on equal terms.
    """
    states = [nodes[i].state for i in parents]
    children = session.expand(prompt, states, num_children)
    flat = [child for group in children for child in group]
    rewards, _ = session.rollout(prompt, flat, samples, phase="tree_estimate")

    groups = [list(rewards[j * num_children : (j + 1) * num_children]) for j in range(len(parents))]
    decision = decide(
        session,
        [prompt] * len(parents),
        groups,
        horizons=[horizon] * len(parents),
        root_groups=[nodes[i].rewards for i in parents],
        **pad,
        **options,
    )

    added = []
    for j, parent in enumerate(parents):
        nodes[parent].expanded = True
        nodes[parent].visits += 1
        nodes[parent].value = float(decision.root_value[j])
        values = decision.values[j, :num_children]
        session.record(
            prompt,
            TraceStep(
                "tree_select", 0, num_children, None, tuple(map(float, values)), nodes[parent].value
            ),
        )
        for c in range(num_children):
            node = _Node(
                flat[j * num_children + c],
                parent,
                nodes[parent].depth + 1,
                rewards[j * num_children + c],
                float(values[c]),
            )
            nodes.append(node)
            added.append(len(nodes) - 1)
    return added


def _estimate_roots(session, samples):
    """Estimate every root with ``m`` rollouts; values come with the first expansion."""
    prompts = list(range(session.num_prompts))
    drawn = session.rollout_many(
        [(p, [session.roots[p]]) for p in prompts], samples, phase="estimate_root"
    )
    return [[_Node(session.roots[p], None, 0, drawn[p][0][0])] for p in prompts]


def _exploit_best(session, prompt, nodes, candidates, options, pad):
    """Value ``candidates`` at the budget left and spend it on the best."""
    remaining = session.remaining(prompt)
    decision = decide(
        session,
        [prompt],
        [[nodes[i].rewards for i in candidates]],
        horizons=[max(1, remaining)],
        **pad,
        **options,
    )
    chosen = int(decision.index[0])
    values = tuple(float(v) for v in decision.values[0, : len(candidates)])
    session.record(prompt, TraceStep("select", 0, len(candidates), chosen, values))
    session.rollout(prompt, [nodes[candidates[chosen]].state], remaining, phase="exploit")


def slg_tree(
    session: SearchSession,
    *,
    num_children: int = 4,
    samples_per_state: int | None = None,
    beam_width: int = 2,
    expand_fraction: float = 0.5,
    max_depth: int = 10,
    value="gaussian",
    tail_fraction: float = 0.2,
    upper_level: float = 0.9,
) -> list:
    """Greedy multi-stage SLG: expand the best leaves level by level.

    1. Estimate the root with ``m`` rollouts; the frontier is the root.
    2. Expand every unexpanded frontier node that fits in the tree budget
       (best first) into ``num_children`` children with ``m`` rollouts each.
    3. Drop each child whose ``V_hat`` is below its parent's; the parents stay
       candidates (the "stay at the parent" option).
    4. Keep the ``beam_width`` best of parents and surviving children as the
       new frontier (ties: parents first, then the earlier child).
    5. Repeat until nothing is left to expand, ``max_depth`` is reached, or
       the next expansion would take the tree phase past
       ``floor(expand_fraction N)`` rollouts.
    6. Spend the remaining budget on the frontier node with the largest
       ``V_hat`` at that remaining budget.

    Values during the tree phase use the horizon ``N - floor(expand_fraction N)``.

    Args:
      session: the search session.
      num_children: children per expansion.
      samples_per_state: ``m`` rollouts per node; the paper rule's ``m`` when None.
      beam_width: frontier size after pruning.
      expand_fraction: share of ``N`` the tree phase may spend.
      max_depth: nodes at this depth are not expanded (the root is depth 0);
        capped by ``env.max_depth`` when the environment defines it.
      value: the state value, a name or a callable.
      tail_fraction: tail share of the Gaussian and GPD fits.
      upper_level: posterior quantile of ``"bayes_upper"``.
    """
    num_children, samples = _check_sizes(
        session, num_children, samples_per_state, expand_fraction, max_depth
    )
    if isinstance(beam_width, bool) or int(beam_width) != beam_width or beam_width < 1:
        raise ValueError(f"beam_width={beam_width!r} must be an integer >= 1.")
    check_options(value)
    max_depth = _depth_limit(session, max_depth)
    options = dict(value=value, tail_fraction=tail_fraction, upper_level=upper_level)
    tree_budget = int(expand_fraction * session.budget)
    horizon = max(1, session.budget - tree_budget)
    cost = num_children * samples

    # One buffer shape for every decision of the search: one compilation.
    pad = dict(min_batch=beam_width, min_states=max(num_children, beam_width))

    trees = _estimate_roots(session, samples)
    for prompt, nodes in enumerate(trees):
        frontier = [0]
        while True:
            open_nodes = [
                i for i in frontier if not nodes[i].expanded and nodes[i].depth < max_depth
            ]
            affordable = (tree_budget - session.spent(prompt)) // cost
            parents = open_nodes[: max(0, affordable)]
            if not parents:
                break
            added = _grow(
                session,
                prompt,
                nodes,
                parents,
                num_children=num_children,
                samples=samples,
                horizon=horizon,
                options=options,
                pad=pad,
            )
            kept = [i for i in added if nodes[i].value >= nodes[nodes[i].parent].value]
            candidates = frontier + kept
            ranked = sorted(range(len(candidates)), key=lambda j: -nodes[candidates[j]].value)
            frontier = [candidates[j] for j in ranked[:beam_width]]
        _exploit_best(session, prompt, nodes, frontier, options, pad)
    return session.results()


def slg_tree_ucb(
    session: SearchSession,
    *,
    num_children: int = 4,
    samples_per_state: int | None = None,
    exploration_constant: float = 0.5,
    expand_fraction: float = 0.5,
    max_depth: int = 10,
    value="gaussian",
    tail_fraction: float = 0.2,
    upper_level: float = 0.9,
) -> list:
    """Multi-stage SLG that expands one node at a time by an upper confidence score.

    .. math::

        \\text{score}(s) = \\hat V(s) + c \\sqrt{\\frac{\\ln(n_{parent(s)} + 1)}{n_s + 1}},

    where ``n_s`` counts the expansions of ``s`` (the root uses its own count
    as its parent's). The node of largest score among those above
    ``max_depth`` gets ``num_children`` more children with ``m`` rollouts
    each; a node can be expanded again, which adds new children. The loop
    stops when the next expansion would take the tree phase past
    ``floor(expand_fraction N)`` rollouts; the remaining budget goes to the
    node of largest ``V_hat`` (no bonus) at that remaining budget, the root
    included.

    Args:
      session: the search session.
      num_children: children per expansion.
      samples_per_state: ``m`` rollouts per node; the paper rule's ``m`` when None.
      exploration_constant: ``c``, 0.5 by default.
      expand_fraction: share of ``N`` the tree phase may spend.
      max_depth: nodes at this depth are not expanded (the root is depth 0);
        capped by ``env.max_depth`` when the environment defines it.
      value: the state value, a name or a callable.
      tail_fraction: tail share of the Gaussian and GPD fits.
      upper_level: posterior quantile of ``"bayes_upper"``.
    """
    num_children, samples = _check_sizes(
        session, num_children, samples_per_state, expand_fraction, max_depth
    )
    check_options(value)
    max_depth = _depth_limit(session, max_depth)
    options = dict(value=value, tail_fraction=tail_fraction, upper_level=upper_level)
    tree_budget = int(expand_fraction * session.budget)
    horizon = max(1, session.budget - tree_budget)
    cost = num_children * samples

    pad = dict(min_states=num_children)

    trees = _estimate_roots(session, samples)
    for prompt, nodes in enumerate(trees):
        while session.spent(prompt) + cost <= tree_budget:
            if len(nodes) == 1:
                # The root gets its value with its first expansion; nothing else to pick.
                if max_depth < 1:
                    break
                _grow(
                    session,
                    prompt,
                    nodes,
                    [0],
                    num_children=num_children,
                    samples=samples,
                    horizon=horizon,
                    options=options,
                    pad=pad,
                )
                continue
            size = bucket_size(len(nodes))
            values = np.full(size, -np.inf)
            visits = np.zeros(size)
            parent_visits = np.zeros(size)
            for i, node in enumerate(nodes):
                if node.depth < max_depth:
                    values[i] = node.value
                visits[i] = node.visits
                parent = node.parent if node.parent is not None else i
                parent_visits[i] = nodes[parent].visits
            if not np.any(values > -np.inf):
                break
            index, _ = select_ucb(
                values, visits, parent_visits, exploration_constant=exploration_constant
            )
            _grow(
                session,
                prompt,
                nodes,
                [int(index)],
                num_children=num_children,
                samples=samples,
                horizon=horizon,
                options=options,
                pad=pad,
            )
        _exploit_best(session, prompt, nodes, list(range(len(nodes))), options, pad)
    return session.results()
