#!/usr/bin/env bash
# Every GPU check of the LivePortrait backends on a machine with an NVIDIA GPU, printing one table (a few minutes).
#
#   bash benchmarks/gpu_check.sh [DEVICE]        # DEVICE defaults to cuda (cuda:1 for the second GPU)
#
# Runs, each in its own process: the conformance kit on DEVICE with TF32 off (torch fp32, onnxruntime fp32, auto),
# fp16 with the loose tolerance (torch; onnxruntime when TensorRT is there), the LivePortrait benchmark of every
# backend/precision (JSON), and a headless animated run with both stages (SCRFD + LivePortrait) on the demo source.
# Needs the venv of this checkout, ../shared (the kit and SCRFD model) and, for the headless run, downloaded or
# synthetic models under $MODELS (default: synthetic ones made here). Exit status: 0 when every conformance passes.
set -u
DEVICE="${1:-cuda}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KIT="${KIT:-$ROOT/../shared/liveportrait}"
OUT="${OUT:-$(mktemp -d)}"
export MIRAGE_CACHE_DIR="${MIRAGE_CACHE_DIR:-$OUT/cache}"
cd "$ROOT"
python -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" || { echo "torch sees no CUDA GPU"; exit 2; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python - <<'PY'
import onnxruntime as ort, torch
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), onnxruntime {ort.__version__}: {ort.get_available_providers()}")
PY
python -c "import sys; sys.path.insert(0, '$KIT'); import synth_weights; synth_weights.write_checkpoints('$OUT/weights')"

ROWS=()
STATUS=0
conf() {  # label, extra args
    local label="$1"; shift
    local t0=$SECONDS
    if python -m mirage_desktop.liveportrait.conformance --golden "$KIT/golden" --weights "$OUT/weights" \
        --device "$DEVICE" "$@" >"$OUT/conf-$label.txt" 2>&1; then r=PASS; else r=FAIL; STATUS=1; fi
    ROWS+=("conformance $label|$r|$(tail -1 "$OUT/conf-$label.txt")|$((SECONDS - t0)) s")
}
bench() {  # backend, precision
    local t0=$SECONDS
    if python benchmarks/liveportrait.py --device "$DEVICE" --backend "$1" --precision "$2" --runs 10 \
        --json "$OUT/bench-$1-$2.json" >"$OUT/bench-$1-$2.txt" 2>&1; then
        ROWS+=("bench $1 $2|ok|$(python -c "import json; d=json.load(open('$OUT/bench-$1-$2.json')); print(f\"frame {d['driven_frame_ms']:.1f} ms, \" + ' '.join(f'{k} {v:.1f}' for k, v in d['modules'].items()) + ' | ' + ' '.join(f'{k}={v}' for k, v in d['backend'].items()))")|$((SECONDS - t0)) s")
    else
        ROWS+=("bench $1 $2|FAIL|$(tail -1 "$OUT/bench-$1-$2.txt")|$((SECONDS - t0)) s")
    fi
}
conf torch-fp32 --backend torch --precision fp32
conf onnxruntime-fp32 --backend onnxruntime --precision fp32
conf auto-fp32 --backend auto --precision fp32
conf torch-fp16 --backend torch --precision fp16
conf onnxruntime-fp16 --backend onnxruntime --precision fp16   # needs TensorRT; FAIL lines name the reason
for b in torch onnxruntime auto; do for p in fp32 fp16; do bench "$b" "$p"; done; done

# the whole app, headless, both stages, demo source, 20 s
MODELS="${MODELS:-}"
if [ -z "$MODELS" ]; then
    MODELS="$OUT/models"; mkdir -p "$MODELS/scrfd" "$MODELS/liveportrait/liveportrait"
    cp "$KIT/../models/scrfd_2.5g.onnx" "$MODELS/scrfd/scrfd_2.5g_bnkps.onnx"
    python -c "import sys; sys.path.insert(0, '$KIT'); import synth_weights; synth_weights.write_checkpoints('$MODELS/liveportrait/liveportrait')"
fi
t0=$SECONDS
if mirage --headless --enable scrfd,liveportrait --models-dir "$MODELS" --device "$DEVICE" --seconds 20 \
    --stats-json "$OUT/headless.json" --quiet >"$OUT/headless.txt" 2>&1; then r=ok; else r=FAIL; STATUS=1; fi
ROWS+=("headless scrfd+liveportrait 20 s|$r|$(python -c "import json; d=json.load(open('$OUT/headless.json')); print({k: d[k] for k in list(d)[:6]})" 2>/dev/null || tail -1 "$OUT/headless.txt")|$((SECONDS - t0)) s")

printf '\n%-34s | %-4s | %s | %s\n' check result detail time
for row in "${ROWS[@]}"; do IFS='|' read -r a b c d <<<"$row"; printf '%-34s | %-4s | %s | %s\n' "$a" "$b" "$c" "$d"; done
echo "logs and JSON in $OUT"
exit $STATUS
