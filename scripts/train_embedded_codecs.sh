#!/usr/bin/env bash
# Retrains the nine embedded codecs in bench/codecs/weights/ (three families x three lambdas),
# each continuing from its own shipped file, on 25 natural photos from Debian's
# mate-backgrounds and lomiri-wallpapers-16.04 packages (none is a Kodak image or one of
# bench's evaluation photos), downscaled to a 512-pixel shorter side.
#
#   apt-get install mate-backgrounds lomiri-wallpapers-16.04
#   scripts/train_embedded_codecs.sh hyperprior 17      # one queue per core:
#   scripts/train_embedded_codecs.sh others 8.5         # run both at once on 2 cores
#
# Logs go to $LOGDIR (default /tmp). KODAK (default ../shared/data/kodak) is evaluated after
# each run and the numbers are stored in the weights file; they do not change the weights.
set -euo pipefail
queue=${1:?usage: train_embedded_codecs.sh hyperprior|others MINUTES}
minutes=${2:?usage: train_embedded_codecs.sh hyperprior|others MINUTES}
here=$(cd "$(dirname "$0")/.." && pwd)
weights=$here/bench/codecs/weights
kodak=${KODAK:-$here/../shared/data/kodak}
logdir=${LOGDIR:-/tmp}
bg=/usr/share/backgrounds
data=("$bg/mate/nature")
for f in "$bg"/*_by_*.jpg; do
  case $f in *umang_by_*|*analogpattern_by_*) ;; *) data+=("$f") ;; esac  # two graphics, not photos
done
case $queue in
  hyperprior) families=(hyperprior) ;;
  others) families=(mean-scale gmm) ;;
  *) echo "unknown queue $queue" >&2; exit 2 ;;
esac
lambdas=(0.0035 0.013 0.0483)
for family in "${families[@]}"; do
  for i in 1 2 3; do
    out=$weights/$family-q$i.pt
    cp "$out" "$logdir/$family-q$i.init.pt"
    "$here/.venv/bin/bench" train-codec --family "$family" --lambda "${lambdas[$((i-1))]}" \
      --minutes "$minutes" --threads 1 --seed 0 --log-every 200 --M 64 --short-side 512 \
      --init "$logdir/$family-q$i.init.pt" --data "${data[@]}" \
      --evaluate "$kodak" --out "$out" >"$logdir/train-$family-q$i.log" 2>&1
  done
done
