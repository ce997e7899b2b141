#!/usr/bin/env bash
# Run every benchmark once and write its output, with the command and the machine, to
# benchmarks/results/NAME.txt: the logs that docs/benchmarks.rst quotes.
# Usage: bash benchmarks/run_all.sh DATA_DIR [PYTHON]
#   ONLY="gru_lstm_kernel trainer_vs_loop_gru" bash benchmarks/run_all.sh DATA_DIR: those logs only.
#   DATA_DIR: a folder holding MNIST/raw (e.g. ./data after `examples/mnist_rnn.py --download`).
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:?usage: bash benchmarks/run_all.sh DATA_DIR [PYTHON]}
python=${2:-python}
mkdir -p benchmarks/results

machine() {
  local cpu
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
  echo "$(nproc) vCPUs ($cpu), $(free -g | awk '/Mem/{print $2}') GiB;" \
    "$("$python" -c 'import platform, torch; print("Python", platform.python_version(), "torch", torch.__version__, "CUDA" if torch.cuda.is_available() else "no GPU")')"
}

run() {
  local name=$1 log=${LOG:-$1}
  shift
  if [[ -n ${ONLY:-} && " $ONLY " != *" $log "* ]]; then return 0; fi
  {
    local shown="" arg
    for arg in "$@"; do  # the data folder is written as DATA_DIR, as in the usage line
      if [[ $arg == "$root" ]]; then shown+=" DATA_DIR"; else shown+=" $arg"; fi
    done
    echo "# command: python benchmarks/$name.py${shown}"
    echo "# date: $(date -u +%Y-%m-%d)"
    echo "# machine: $(machine)"
    echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    "$python" "benchmarks/$name.py" "$@" 2>&1
  } >"benchmarks/results/$log.txt"
}

run data_vs_dataloader --root "$root"
run packing --repeats 3
run rnn_kernel --steps 60
run gru_lstm_kernel --steps 40 --rounds 3
LOG=kernel_floor_rnn run gru_lstm_kernel --steps 40 --rounds 3 --cells rnn --only mnist
run step_pairs --root "$root" --max-batches 150
run trainer_vs_loop --root "$root" --max-batches 100 --repeats 3
LOG=trainer_vs_loop_gru run trainer_vs_loop --root "$root" --max-batches 100 --repeats 3 --cell gru
LOG=trainer_vs_loop_lstm run trainer_vs_loop --root "$root" --max-batches 100 --repeats 3 --cell lstm
