#!/usr/bin/env bash
# One-shot measurement campaign on a lent GPU machine (docs/CALIBRATION.md, "One-shot campaign").
# Runs from the source tree with the image's python3 (torch, pynvml there; no lightgbm needed); every file goes to
# $OUT so that it comes back even when a call hits its limit. Reads the device only: no clock, power-limit,
# persistence or MIG setting is changed.
#   call 1: bash benchmarks/device/campaign.sh 1 PREDICTIONS.json   (~5 min: NVML facts, host probe, validation)
#   call 2: bash benchmarks/device/campaign.sh 2                    (~5 min: calibration suite 'default', part 1/2)
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
: "${OUT:?OUT must name the folder whose files come back}"
case "${1:-}" in
1)
  nvidia-smi --query-gpu=name,uuid,driver_version,pci.bus_id,power.limit,power.default_limit,power.max_limit,clocks.max.sm,clocks.max.mem,clocks.sm,temperature.gpu,persistence_mode,power.draw --format=csv >"$OUT/nvidia-smi.csv" 2>&1
  cat "$OUT/nvidia-smi.csv"
  { python3 -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
    python3 -c "import pynvml; print('nvidia-ml-py', getattr(pynvml, '__version__', '?'))"
    nproc; grep -m1 'model name' /proc/cpuinfo; } >"$OUT/env.txt" 2>&1
  cat "$OUT/env.txt"
  timeout 90 python3 benchmarks/device/host_probe.py "$OUT/host_probe.json" 2>&1 | grep -v USDT
  timeout 380 python3 -m wattlint validate measure --predictions "$2" --device cuda --window-scale 0.5 --out "$OUT/" 2>&1 | tee "$OUT/validate.log"
  ;;
2)
  timeout 420 python3 -m wattlint calibrate --device cuda --suite default --part 1/2 --out "$OUT/cal" --no-progress 2>&1 | tee "$OUT/calibrate.log"
  ;;
*) echo "usage: campaign.sh 1 PREDICTIONS.json | 2" >&2; exit 2;;
esac
