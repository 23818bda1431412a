"""Mesh helpers, and sharded sampling on 8 simulated CPU devices against one device."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from slgjax.lm.mesh import (
    LLAMA_PARAMETER_RULES,
    batch_sharding,
    make_mesh,
    parameter_shardings,
    replicated,
)

# The device-count flag only works before jax is imported, so this script runs
# in a fresh interpreter. It samples with one device, then on a data-only mesh
# (8 x 1) and a data-and-model mesh (4 x 2), and prints the results as JSON.
SHARDED_SAMPLING = textwrap.dedent(
    """
    import json, warnings

    import jax
    import numpy as np
    from jax.sharding import PartitionSpec as P
    from lm_tiny import tiny_causal_lm

    from slgjax.lm.mesh import LLAMA_PARAMETER_RULES, make_mesh, parameter_shardings, shard_model
    from slgjax.lm.sampler import Sampler
    from slgjax.lm.sampling import SamplingConfig

    config = SamplingConfig(temperature=1.0, top_p=0.9, max_new_tokens=8)
    prompts = [[264, 72, 105, 10], [264, 50, 60, 70, 80, 90]]

    def run(mesh, rules):
        model = tiny_causal_lm(seed=4)
        if mesh is not None:
            shard_model(model, mesh, rules=rules)
        sampler = Sampler(model, eos_token_ids=(), max_length=32, mesh=mesh)
        generation = sampler.generate(prompts, key=jax.random.key(11), config=config, num_samples=4)
        return generation, model

    reference, _ = run(None, ())
    result = {
        "devices": jax.device_count(),
        "tokens": np.asarray(reference.tokens).tolist(),
        "logprobs": np.asarray(reference.logprobs).tolist(),
    }
    for name, model_axis_size in (("data", 1), ("data_model", 2)):
        mesh = make_mesh(model_axis_size=model_axis_size)
        generation, model = run(mesh, LLAMA_PARAMETER_RULES)
        q_kernel = model.model.layers[0].self_attn.q_proj.kernel[...]
        result[name] = {
            "tokens": np.asarray(generation.tokens).tolist(),
            "logprobs": np.asarray(generation.logprobs).tolist(),
            "token_devices": len(generation.tokens.sharding.device_set),
            "token_spec": str(generation.tokens.sharding.spec),
            "q_kernel_spec": str(q_kernel.sharding.spec),
        }

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shardings = parameter_shardings(
            {"odd": np.zeros((3, 4))}, make_mesh(model_axis_size=2), rules=(("odd", P("model")),)
        )
    result["odd_spec"] = str(shardings["odd"].spec)
    result["odd_warning"] = str(caught[0].message) if caught else ""
    print("RESULT " + json.dumps(result))
    """
)


@pytest.fixture(scope="module")
def sharded_run():
    tests_dir = pathlib.Path(__file__).parent
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tests_dir), env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, "-c", SHARDED_SAMPLING], env=env, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(line for line in completed.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_subprocess_sees_eight_devices(sharded_run):
    assert sharded_run["devices"] == 8


@pytest.mark.parametrize("name", ["data", "data_model"])
def test_sharded_sampling_matches_one_device(sharded_run, name):
    sharded = sharded_run[name]
    np.testing.assert_array_equal(sharded["tokens"], sharded_run["tokens"])
    np.testing.assert_allclose(sharded["logprobs"], sharded_run["logprobs"], atol=1e-4)
    assert sharded["token_devices"] == 8
    assert "data" in sharded["token_spec"]


def test_rules_split_projection_over_model(sharded_run):
    assert sharded_run["data"]["q_kernel_spec"] == str(P(None, "model"))
    assert sharded_run["data_model"]["q_kernel_spec"] == str(P(None, "model"))


def test_indivisible_parameter_stays_replicated(sharded_run):
    assert sharded_run["odd_spec"] == str(P())
    assert "odd of shape (3, 4)" in sharded_run["odd_warning"]


def test_make_mesh_axes():
    mesh = make_mesh()
    assert mesh.axis_names == ("data", "model")
    assert mesh.shape["data"] == jax.device_count()
    assert mesh.shape["model"] == 1
    with pytest.raises(ValueError, match="model_axis_size=0"):
        make_mesh(model_axis_size=0)
    with pytest.raises(ValueError, match="model_axis_size=3"):
        make_mesh(model_axis_size=3, devices=jax.devices() * 2)


def test_shardings_follow_rules():
    mesh = make_mesh()
    state = {
        "layers": {"0": {"self_attn": {"q_proj": {"kernel": np.zeros((4, 8))}}}},
        "norm": {"weight": np.zeros(4)},
    }
    shardings = parameter_shardings(state, mesh, rules=LLAMA_PARAMETER_RULES)
    assert shardings["layers"]["0"]["self_attn"]["q_proj"]["kernel"].spec == P(None, "model")
    assert shardings["norm"]["weight"].spec == P()
    assert replicated(mesh).spec == P()
    assert batch_sharding(mesh, ndim=2).spec == P("data", None)
    with pytest.raises(ValueError, match="axis=2"):
        batch_sharding(mesh, ndim=2, axis=2)
