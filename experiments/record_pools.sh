#!/usr/bin/env bash
# Record the reward pools of the evidence experiments (docs/RESULTS.md): 30 chain_sum
# problems (two or three terms of one or two digits, seed 3002, never seen by the reward
# head's training), 256 responses from each prompt and 64 from each of 8 sampled first
# steps, with the embedded SmolLM2-135M-Instruct sampled as `slgjax demo` samples it.
# Rewards are the verifier's 0/1 here; experiments/rescore_pools.py adds the scorer's
# rewards. The command resumes an interrupted run; run it from the repository root.
set -euo pipefail
slgjax sample --task rg:chain_sum --task-option size=30 --task-option seed=3002 \
  --scorer verifier --temperature 0.7 --top-p 0.9 --max-new-tokens 48 \
  --step-string '\n' --step-tokens 8 --samples-per-prompt 16 --max-batch-size 64 \
  --seed 0 --root-rollouts 256 --num-children 8 --child-rollouts 64 \
  --output experiments/data/pools/chain_sum_3002.jsonl --no-progress "$@"
