#!/usr/bin/env bash
# Peak memory and wall-clock of real fairseq-hydra-train pretraining runs with the LARGE-style
# feature encoder and pre-LN layers (extractor_mode=layer_norm, layer_norm_first, conv_bias) on
# the tiny_cpu yaml, one run after the other: fairseq's wav2vec2 fp32, the plugin fp32, the
# plugin bf16 + packed dropout. Same overrides in every arm but the _names and plugin-only fields.
#   bash benchmarks/large_style_memory.sh MANIFEST_DIR [UPDATES (default 100)]
# MANIFEST_DIR holds train.tsv and valid.tsv (e.g. bench_time_to_accuracy.py's WORK/manifests/pretrain).
# Prints one line per arm (peak RSS from GNU time: the largest of the trainer and its loader
# worker; wall s) and, last, `RATIO peak RSS plugin <arm> / fairseq: N.NNx`.
set -euo pipefail
data=${1:?usage: large_style_memory.sh MANIFEST_DIR [UPDATES]}
updates=${2:-100}
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
trainer=$(dirname "$py")/fairseq-hydra-train
[ -x /usr/bin/time ] || { echo "large_style_memory.sh: needs GNU time (/usr/bin/time): apt-get install time" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
shared=(--config-dir "$here/examples/wav2vec2/config/pretraining" --config-name tiny_cpu
        "task.data=$data" common.cpu=true common.seed=1 "optimization.max_update=$updates"
        'optimization.lr=[0.001]' optimization.clip_norm=5 lr_scheduler.warmup_updates=50
        dataset.max_tokens=320000 dataset.num_workers=1 dataset.required_batch_size_multiple=1
        dataset.validate_interval_updates=50 dataset.validate_interval=1000000 checkpoint.no_save=true
        model.extractor_mode=layer_norm ++model.layer_norm_first=true ++model.conv_bias=true)
fairseq=(task._name=audio_pretraining model._name=wav2vec2 criterion._name=wav2vec)
plugin=("common.user_dir=$here/w2v2_plugin")
declare -A rss
run_arm() {
  local arm=$1; shift
  /usr/bin/time -f '%M %e' -o "$work/$arm.time" "$trainer" "${shared[@]}" "hydra.run.dir=$work/$arm" \
    "checkpoint.save_dir=$work/$arm/ckpt" "$@" > "$work/$arm.log" 2>&1 \
    || { tail -20 "$work/$arm.log" >&2; echo "large_style_memory.sh: arm $arm failed" >&2; exit 1; }
  read -r kb secs < "$work/$arm.time"
  rss[$arm]=$kb
  local acc
  acc=$(sed -n 's/.*"valid_accuracy": "\([0-9.]*\)".*/\1/p' "$work/$arm.log" | tail -1)
  printf '%-22s peak RSS %6.0f MB   wall %7.1f s   last valid accuracy %s\n' "$arm" "$((kb / 1024))" "$secs" "${acc:-n/a}"
}
run_arm fairseq_fp32 "${fairseq[@]}"
run_arm plugin_fp32 "${plugin[@]}" ++task.precision=fp32
run_arm plugin_bf16_packed "${plugin[@]}" ++task.precision=bf16 ++model.packed_dropout=true
for arm in plugin_fp32 plugin_bf16_packed; do
  awk -v a="${rss[$arm]}" -v b="${rss[fairseq_fp32]}" -v n="$arm" \
    'BEGIN { printf "RATIO peak RSS plugin %s / fairseq: %.2fx\n", n, a / b }'
done
