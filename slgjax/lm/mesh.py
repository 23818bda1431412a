"""Device mesh and shardings for rollouts and model parameters.

The mesh has two axes: "data", along which rollouts (the batch) are split,
and "model", along which large weight matrices may be split. The default
mesh puts every device on "data" and replicates the parameters, which suits
models that fit on one device; :func:`shard_model` with
:data:`LLAMA_PARAMETER_RULES` splits the attention and MLP projections over
"model" for checkpoints that do not (Megatron-style column and row splits,
Shoeybi et al. 2019, arXiv:1909.08053).

Nothing here runs at import time; multi-host runs call
:func:`initialize_distributed` first, once per process.
"""

import re
import warnings
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "LLAMA_PARAMETER_RULES",
    "batch_sharding",
    "initialize_distributed",
    "make_mesh",
    "parameter_shardings",
    "replicated",
    "shard_model",
]

# (regular expression searched in the parameter path, partition spec). The
# first matching rule wins; a parameter that no rule matches is replicated.
# Paths read like "layers/3/attention/q_proj/kernel/value"; kernels are
# [in, out]: column-parallel projections split "out", row-parallel ones "in".
LLAMA_PARAMETER_RULES: tuple[tuple[str, P], ...] = (
    (r"(q_proj|k_proj|v_proj|gate_proj|up_proj)/kernel", P(None, "model")),
    (r"(q_proj|k_proj|v_proj|gate_proj|up_proj)/bias", P("model")),
    (r"(o_proj|down_proj)/kernel", P("model", None)),
    (r"(lm_head|score)/kernel", P(None, "model")),
    (r"embed", P("model", None)),
)


def make_mesh(*, model_axis_size: int = 1, devices: Sequence | None = None) -> Mesh:
    """Build a ("data", "model") mesh over the given devices.

    Args:
      model_axis_size: devices along "model"; the rest form "data". 1 (the
        default) replicates parameters and splits only rollouts.
      devices: devices of the mesh; defaults to ``jax.devices()``, which is
        every device of every process after :func:`initialize_distributed`
        and the local devices otherwise.

    Raises:
      ValueError: if ``model_axis_size`` does not divide the device count.
    """
    devices = list(jax.devices() if devices is None else devices)
    if model_axis_size < 1 or len(devices) % model_axis_size:
        raise ValueError(
            f"model_axis_size={model_axis_size} must be >= 1 and divide the {len(devices)} devices."
        )
    grid = np.asarray(devices, dtype=object).reshape(-1, model_axis_size)
    return Mesh(grid, ("data", "model"))


def replicated(mesh: Mesh) -> NamedSharding:
    """Sharding that keeps a full copy of an array on every device of ``mesh``."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, *, ndim: int = 1, axis: int = 0) -> NamedSharding:
    """Sharding that splits axis ``axis`` of an ``ndim``-dimensional array over "data"."""
    if not 0 <= axis < ndim:
        raise ValueError(f"axis={axis} is outside an array of ndim={ndim}.")
    spec = [None] * ndim
    spec[axis] = "data"
    return NamedSharding(mesh, P(*spec))


def _path_string(path) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/")


def _fits(shape, spec: P, mesh: Mesh) -> bool:
    if len(spec) > len(shape):
        return False
    for size, axis in zip(shape, spec, strict=False):
        if axis is not None and size % mesh.shape[axis]:
            return False
    return True


def parameter_shardings(state, mesh: Mesh, *, rules=LLAMA_PARAMETER_RULES):
    """Return a pytree of shardings, one per parameter of an NNX state.

    Args:
      state: an ``nnx.State`` (or any pytree of arrays).
      mesh: the target mesh.
      rules: ``(pattern, PartitionSpec)`` pairs; the first pattern found in a
        parameter's "/"-joined path gives its spec. Unmatched parameters are
        replicated.

    A matched parameter whose split dimension is not divisible by the mesh
    axis is replicated instead, with a warning naming it.
    """
    compiled = [(re.compile(pattern), spec) for pattern, spec in rules]

    def choose(path, leaf):
        name = _path_string(path)
        for pattern, spec in compiled:
            if pattern.search(name) is None:
                continue
            if _fits(np.shape(leaf), spec, mesh):
                return NamedSharding(mesh, spec)
            warnings.warn(
                f"parameter {name} of shape {np.shape(leaf)} does not split as {spec} over "
                f"the mesh {dict(mesh.shape)}; it stays replicated.",
                stacklevel=3,
            )
            break
        return replicated(mesh)

    return jax.tree_util.tree_map_with_path(choose, state)


def shard_model(model, mesh: Mesh, *, rules=()) -> None:
    """Place an NNX model's parameters on ``mesh``, in place.

    Args:
      model: an ``nnx.Module``.
      mesh: the target mesh.
      rules: parameter rules as in :func:`parameter_shardings`; the default
        (no rules) replicates every parameter. Pass
        :data:`LLAMA_PARAMETER_RULES` to split the projections over "model".
    """
    state = nnx.state(model)
    shardings = parameter_shardings(state, mesh, rules=rules)
    nnx.update(model, jax.device_put(state, shardings))


def initialize_distributed(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
) -> None:
    """Join a multi-host JAX job by calling ``jax.distributed.initialize``.

    Call it once per process, before any other JAX call. With no arguments JAX
    detects the cluster (Cloud TPU, Slurm, Open MPI); otherwise pass the
    coordinator's ``host:port``, the process count and this process's id.
    Each process must then call the sampler with the same inputs.
    """
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
    )
