#!/usr/bin/env bash
# Learning-rate sweep on the embedded benchmark (the evidence behind Experiments/StrategyDefaults.cs and
# docs/learning-rates.md). Each (strategy, lr) pair is one `medpeft study` run on the cached pretrained model;
# selection uses best_validation_acc in OUT/<strategy>-<lr>/results.json — never the test columns.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-lr-sweep}"
grid=("ln 3e-3" "ln 1e-2" "ln 3e-2" "ln 1e-1"
      "full 1e-4" "full 2e-4" "full 5e-4"
      "attn 2e-4" "attn 5e-4"
      "ffn 2e-4" "ffn 5e-4"
      "bias 3e-3" "bias 1e-2"
      "lora 5e-4" "lora 2e-3" "lora 5e-3" "lora 1e-2")
for pair in "${grid[@]}"; do
  set -- $pair
  "$here/medpeft" study --strategies "$1" --lr "$2" --no-random-init --out "$out/$1-$2" > "$out-$1-$2.log"
  grep -h "\"strategy\": \"$1\"" -A 12 "$out/$1-$2/results.json" | grep -E '"(strategy|learning_rate|best_validation_acc|overall_acc)"' | tr -d '\n '
  echo
done
