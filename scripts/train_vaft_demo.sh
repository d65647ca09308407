#!/usr/bin/env bash
# SUPERSEDED: the shipped demo-unet-vaft now comes from scripts/train_robust_demo.sh (VAFT against
# the public-code VAFA preset, with a held-out slab; docs/results/robust_models.md). This script
# reproduces the earlier twin (sha256 517762655f6e..., trained against clipped VAFA, which barely
# hurts the demo model) for docs/results/vaft_demo_patientB.md, and writes it to its run folder,
# not into the package; step 3 evaluates that file instead of the registry's demo-unet-vaft.
#
# The earlier VAFT twin of the demo model: demo-unet fine-tuned with VAFT (regime vafa-fr, the
# paper's M_VAFA-FR) on patient A only, then both models evaluated on the held-out patient B,
# clean and under PGD, FGSM, BIM, GN and VAFA. CPU: about 12 minutes of CPU time (one thread)
# for the 240 training steps, a few more for the evaluation.
#
#   bash scripts/train_vaft_demo.sh            # from the project root; needs demo_unet.safetensors
#
# Writes its run folder (default /tmp/freqadv-vaft-demo) with demo_unet_vaft_clipped.safetensors
# and the evaluation
# (default freqadv-out-vaft-eval/). Patient B is never trained or tuned on.
# Labels of both patients are TotalSegmentator's model output (silver standard), not manual.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
RUN="${RUN:-/tmp/freqadv-vaft-demo}"
EVAL_OUT="${EVAL_OUT:-freqadv-out-vaft-eval}"
THREADS="${THREADS:-1}"
MODELS=FreqAdvSegment/FreqAdvSegmentLib/resources/models
CACHE="${FREQADV_CACHE:-$HOME/.cache/freqadvsegment}"

test -f "$MODELS/demo_unet.safetensors" || { echo "train the demo model first: python scripts/train_demo_model.py" >&2; exit 1; }

# 1. A datalist of patient A only (the shipped sample), in the cache.
mkdir -p "$CACHE/patientA"
"$PYTHON" - "$CACHE/patientA/datalist.json" <<'EOF'
import json, sys
from FreqAdvSegmentLib.samples.sample_data import sample_ct_path, sample_labels_path
case = {"image": str(sample_ct_path()), "label": str(sample_labels_path())}
open(sys.argv[1], "w").write(json.dumps({"training": [case]}, indent=2) + "\n")
EOF

# 2. VAFT fine-tuning (same as `freqadv train ...` once the command is wired). Augmentation as
#    the demo model's: no left-right flips or 90-degree rotations (they would swap the left and
#    right organs' labels), organ-centred crops 2:1, thin-slab crops (patient B is a 20-slice
#    series). VAFA: q_max 20, 8^3 blocks, tables start at q_max as in the authors' code, 5 steps.
rm -rf "$RUN"
"$PYTHON" -m FreqAdvSegmentLib.training "$CACHE/patientA/datalist.json" -o "$RUN" \
  --init demo-unet --regime vafa-fr \
  --crop 64 --num-samples 1 --batch-size 1 --pos 2 --neg 1 \
  --flip-axes 1,2 --flip-prob 0.1 --rot90-prob 0 --scale-prob 0.5 --shift-prob 0.5 --slab-prob 0.4 \
  --attack-steps 5 --q-max 20 --q-init 20 --block-size 8 \
  --max-steps 240 --lr 1e-4 --warmup-steps 10 --seed 0 --threads "$THREADS" \
  --val-every 0 --ckpt-every 20 --no-tensorboard \
  --export "$RUN/demo_unet_vaft_clipped.safetensors"

# 3. Held-out patient B: clean and under five attacks, both models.
test -f "$CACHE/patientB/datalist.json" || "$PYTHON" scripts/prepare_sample_data.py --patient B
OMP_NUM_THREADS="$THREADS" "$PYTHON" -m FreqAdvSegmentLib.cli evaluate "$CACHE/patientB/datalist.json" \
  --models demo-unet "$RUN/demo_unet_vaft_clipped.safetensors" \
  --method pgd --method fgsm --method bim --method gn --method vafa \
  --steps 10 --q-max 20 --q-init 20 --block-size 8 \
  --device cpu --seed 0 -o "$EVAL_OUT" --overwrite
