#!/usr/bin/env bash
# One prepared GPU run: the Triton kernels' tests on the GPU, then the CUDA benchmark
# (native CTC, the Triton port and the PyTorch path; float32 and bfloat16; peak GPU
# memory; bitwise determinism over 10 runs) at the benchmark sizes, then a short table.
#
#   bash benchmarks/gpu_check.sh            # on a CUDA machine: about 4 minutes (see below)
#   bash benchmarks/gpu_check.sh --dry-run  # on CPU, under Triton's interpreter, tiny sizes
#
# It needs only what a bare GPU machine carries: python3 with torch, triton, numpy,
# pytest and hypothesis (seq_loss_util is used from this checkout, not installed).
# Results go to $OUT (default: a temporary folder): tests.log, bench.log, bench.json,
# decode.log.
#
# Budget, estimated from the sizes: the tests compile about 25 kernel configurations
# (about 1 s each) and run small cases, about 2 minutes with the 45 ahead-of-time
# compiles; the benchmark is 5 sizes x 2 dtypes x 3 implementations, each timed 5 times
# forward and 5 times forward + backward, plus 10 determinism runs and one memory run.
# The slowest is the PyTorch path (a Python loop over frames, about 0.4 s forward +
# backward at T = 1500), about 90 s in all; native and Triton take milliseconds. The
# decoding benchmark (batch 32, 500 frames, beams 32 and 100, 5 repeats) takes about
# 10 s with the C kernel built; without a C compiler, several minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [ "${1:-}" = "--dry-run" ]; then
  export TRITON_INTERPRET=1
  device=cpu
  tests=(tests/test_triton.py -k "nan_and_padding or half_inputs")
  bench=(--device cpu --cuda-table --sizes 2,8,5,2 --repeats 1 --no-memory)
  decode=(--device cpu --smoke)
else
  "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: use --dry-run")'
  device=cuda
  tests=(tests/test_triton.py tests/test_known_answers.py -k "triton")
  bench=(--device cuda --repeats 5)
  decode=(--device cuda --repeats 5)
fi

echo "== tests on $device ($("$PY" -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'))"
"$PY" -m pytest -q -x -p no:cacheprovider "${tests[@]}" 2>&1 | tee "$OUT/tests.log" | tail -3

echo "== benchmark"
"$PY" benchmarks/bench.py "${bench[@]}" --no-tf --json "$OUT/bench.json" > "$OUT/bench.log" 2>&1 \
  || { tail -20 "$OUT/bench.log"; exit 1; }

echo "== decoding (greedy and the beam search on $device tensors; see docs/decoding.md)"
"$PY" benchmarks/bench_decode.py "${decode[@]}" > "$OUT/decode.log" 2>&1 \
  || echo "bench_decode.py exited with an error or a missed goal: see $OUT/decode.log"
grep -E "^(batch|greedy|ours|pyctcdecode|CUDA goal)" "$OUT/decode.log" || tail -20 "$OUT/decode.log"

echo "== summary (fwd+bwd ms; x native; peak MB; bitwise deterministic over 10 runs)"
"$PY" - "$OUT/bench.json" <<'PYEOF'
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
cell = lambda v, f: "-" if v is None else (v if isinstance(v, str) else format(v, f))
print(f"{'(B, T, C, U)':<20} {'dtype':<9} {'impl':<13} {'ms':>8} {'x native':>9} {'MB':>8} det  goal")
for r in rows:
    goal = "" if r["goal"] is None else ("met" if r["meets_goal"] else "MISSED")
    det = {None: "", True: "yes", False: "NO"}[r["deterministic"]]
    print(f"{str(tuple(r['size'])):<20} {r['dtype']:<9} {r['impl']:<13} "
          f"{cell(r['fwd_bwd_ms'], '8.2f'):>8} {cell(r['ratio'], '8.2f'):>9} "
          f"{cell(r['peak_mb'], '8.1f'):>8} {det:<4} {goal}")
PYEOF
echo "results in $OUT"
