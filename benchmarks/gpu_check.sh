#!/usr/bin/env bash
# One prepared GPU check on one H100/H200: an estimated 6 minutes, the machine's start not counted
# (steps 1-3b and a 200-update step 4 took 164 s on an H200; the present 4-6 have not run on a GPU;
# the timeouts total 12.25 min):
#   1. the model parity tests (plugin w2v2 vs fairseq wav2vec2, same weights, tol 1e-4);
#   2. the same parity on the GPU in fp32, and a finite bf16 loss;
#   3. the pretraining step, BASE architecture, plugin bf16 (autocast) vs fairseq fp16 (its own
#      --fp16 way: fp16 weights, fp32 Adam state, loss scaling; fairseq's wav2vec2 cannot train
#      under autocast), 6 crops of 15 s (~1.4 M samples, BASE's max_tokens per GPU),
#      printing the ratio fairseq time / plugin time (target >= 1.5x) and both peak memories;
#      then the same step against fairseq fp32;
#   4. short runs (benchmarks/bench_short_run.py: tiny_cpu and BASE, 600 updates each on synthetic
#      phone audio), plugin bf16 vs fp32 from the same weights: the loss curves side by side;
#   5. torch.profiler of the BASE step, both implementations (benchmarks/profile_pretrain_step.py);
#   6. step 3 again with the plugin's transformer layers under torch.compile (first step = compile time).
#
# The device image has Python 3.12 and torch but no fairseq/hydra/omegaconf. Prepare once on
# the CPU machine (network there), from the repository root:
#     bash benchmarks/gpu_check.sh --fetch-wheels      # cp312 wheels into .whl/ (~21 MB, git-ignored)
# then run on the device with carry [".whl"]:
#     bash benchmarks/gpu_check.sh
# Output is also written under $OUT (or /tmp/gpu_check): gpu_check.log and the JSON results.
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS=(ve-fairseq==0.12.3 hydra-core==1.3.8 omegaconf==2.3.1 bitarray==3.12.3
        soundfile==0.14.0 cffi==2.1.1 pycparser==3.12 editdistance==0.8.1)
if [ "${1:-}" = "--fetch-wheels" ]; then
    mkdir -p .whl
    grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
    for spec in "${WHEELS[@]}"; do
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .whl "$spec" || exit 2
    done
    # antlr4-python3-runtime 4.9.3 (omegaconf's parser) ships as an sdist only: build its pure wheel
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --no-binary :all: antlr4-python3-runtime==4.9.3 -d "$tmp" || exit 2
    python3 -m pip wheel -q --no-deps "$tmp"/antlr4-python3-runtime-4.9.3.tar.gz -w .whl || exit 2
    rm -rf "$tmp"
    ls -la .whl
    exit 0
fi

PY=${PYTHON:-python3}
OUTDIR=${OUT:-/tmp/gpu_check}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_check.log"
export PYTHONUNBUFFERED=1
exec > >(tee "$LOG") 2>&1

if ! $PY -c "import fairseq" 2>/dev/null; then
    if [ ! -d .whl ]; then
        echo "fairseq is not importable and no .whl/ was carried: run 'bash benchmarks/gpu_check.sh --fetch-wheels'" \
             "on the CPU machine first and carry .whl" >&2
        exit 2
    fi
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 2
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

echo "== machine"; date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, fairseq; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'fairseq', fairseq.__version__)"

status=0
echo "== 1. parity tests (CPU of the device machine)"
timeout 60 $PY -m pytest -q -p no:cacheprovider tests/test_model_parity.py 2>&1 | tail -3 || status=1

echo "== 2. parity on the GPU (fp32) and a bf16 loss"
timeout 45 $PY - <<'EOF' || status=1
import sys
sys.path.insert(0, "benchmarks")
import torch
import common
from bench_pretrain_step import make_sample, make_step

dev = torch.device("cuda")
torch.backends.cuda.matmul.allow_tf32 = False  # parity in true fp32
torch.backends.cudnn.allow_tf32 = False
ref, ours = common.build_pretrain_pair("tiny_cpu", 1)
ref, ours = ref.to(dev).eval(), ours.to(dev).eval()
audio = common.batch_audio(3, 2.0, 1, dev)
with torch.no_grad():
    r, o = ref.extract_features(audio, None), ours.extract_features(audio, None)
    rq, ri = ref.quantize(audio)
    oq, oi = ours.quantize(audio)
d = float((r["x"] - o["x"]).abs().max())
print(f"GPU fp32 extract_features max abs diff {d:.2e} (tol 1e-4); quantizer codes equal: {torch.equal(ri, oi)}")
ours.train()
sample = make_sample(ours, audio, 1)
loss = make_step(ours, sample, dev, "bf16")()
print(f"plugin bf16 training step loss {loss:.3f} (finite: {loss == loss and abs(loss) != float('inf')})")
ok = d <= 1e-4 and torch.equal(ri, oi) and loss == loss
sys.exit(0 if ok else 1)
EOF

echo "== 3. pretraining step, BASE, plugin bf16 (autocast) vs fairseq fp16 (weights in fp16)"
timeout 120 $PY benchmarks/bench_pretrain_step.py --arch base --device cuda --dtype bf16 --peer-dtype fp16 \
    --batch 6 --seconds 15 --warmup 3 --repeats 10 --json "$OUTDIR/pretrain_base_cuda.json" 2>&1 \
    | grep -v "Warning\|warn(" || status=1

echo "== 3b. the same step, plugin bf16 vs fairseq fp32"
timeout 60 $PY benchmarks/bench_pretrain_step.py --arch base --device cuda --dtype bf16 --peer-dtype fp32 \
    --batch 6 --seconds 15 --warmup 3 --repeats 8 --no-memory --json "$OUTDIR/pretrain_base_cuda_fp32.json" 2>&1 \
    | grep -v "Warning\|warn(" || status=1

echo "== 4. short runs, plugin bf16 vs fp32 from the same weights on the same batches (exit 1 if the curves part)"
F="Warning\|warn(\|WeightNorm\|tensor.detach\|value = float"
# tiny_cpu: its loss leaves the chance level within ~150 updates (seen on CPU), so the curves show learning
timeout 90 $PY benchmarks/bench_short_run.py --arch tiny_cpu --device cuda --dtype bf16 --updates 600 \
    --lr-warmup 40 --batch 4 --seconds 4 --json "$OUTDIR/short_run_tiny_cuda.json" 2>&1 | grep -v "$F" || status=1
timeout 150 $PY benchmarks/bench_short_run.py --arch base --device cuda --dtype bf16 --updates 600 \
    --batch 4 --seconds 8 --json "$OUTDIR/short_run_base_cuda.json" 2>&1 | grep -v "$F" || status=1

echo "== 5. where the BASE step's GPU time goes (torch.profiler; full tables in $OUTDIR/profile_base_cuda.txt)"
timeout 60 $PY benchmarks/profile_pretrain_step.py --arch base --device cuda --dtype bf16 --peer-dtype fp16 \
    --warmup 3 --repeats 3 > "$OUTDIR/profile_base_cuda.txt" 2>&1 || status=1
grep -A 14 "^== " "$OUTDIR/profile_base_cuda.txt"

echo "== 6. the BASE step with the plugin's transformer layers under torch.compile (an experiment: is it worth a plugin option?)"
timeout 150 $PY benchmarks/bench_pretrain_step.py --arch base --device cuda --dtype bf16 --peer-dtype fp16 \
    --batch 6 --seconds 15 --warmup 3 --repeats 10 --no-memory --compile layers \
    --json "$OUTDIR/pretrain_base_cuda_compiled.json" 2>&1 | grep -v "Warning\|warn(" || status=1

echo "== gpu_check done, status $status (log: $LOG)"
exit $status
