#!/usr/bin/env bash
# How the nine embedded codecs in bench/codecs/weights/ were (re)trained, stage 2: on 25
# natural photos from Debian's mate-backgrounds and lomiri-wallpapers-16.04 packages (none
# is a Kodak image or one of bench's evaluation photos), downscaled to a 512-pixel shorter
# side, each run continuing from an earlier file (--init). Two queues, one per core:
#
#   apt-get install mate-backgrounds lomiri-wallpapers-16.04
#   scripts/train_embedded_codecs.sh first    # stage-2 λ = 0.0035 and λ = 0.013 runs
#   scripts/train_embedded_codecs.sh a & scripts/train_embedded_codecs.sh b   # then these
#   scripts/train_embedded_codecs.sh high     # hyperprior q4-q7: the 0.5-1 bpp end (rate control)
#
# INIT (default /tmp/bench-train) keeps copies of the files each run starts from; logs go
# there too. KODAK (default ../shared/data/kodak) is evaluated after each run and stored in
# the weights file; that does not change the weights. The weights README lists what ran.
set -euo pipefail
queue=${1:?usage: train_embedded_codecs.sh first|a|b|high}
here=$(cd "$(dirname "$0")/.." && pwd)
w=$here/bench/codecs/weights
kodak=${KODAK:-$here/../shared/data/kodak}
init=${INIT:-/tmp/bench-train}
mkdir -p "$init"
bg=/usr/share/backgrounds
data=("$bg/mate/nature")
for f in "$bg"/*_by_*.jpg; do
  case $f in *umang_by_*|*analogpattern_by_*) ;; *) data+=("$f") ;; esac  # two graphics, not photos
done

# run FAMILY LAMBDA MINUTES INIT_FILE OUT_NAME
run() {
  local start="$init/$5.init.pt"
  cp "$4" "$start"
  "$here/.venv/bin/bench" train-codec --family "$1" --lambda "$2" --minutes "$3" --threads 1 --seed 0 \
    --log-every 200 --M 64 --short-side 512 --init "$start" --data "${data[@]}" \
    --evaluate "$kodak" --out "$w/$5.pt" >"$init/train-$5.log" 2>&1
}

case $queue in
  first)  # each family at λ = 0.0035 (q1) and at 0.013, from the stage-1 files
    for family in hyperprior mean-scale gmm; do
      minutes=8.5; [ "$family" = hyperprior ] && minutes=17
      run "$family" 0.0035 "$minutes" "$w/$family-q1.pt" "$family-q1"
      run "$family" 0.013 "$minutes" "$w/$family-q2.pt" "$family-l0.013"
      mv "$w/$family-l0.013.pt" "$init/$family-l0.013.pt"
    done ;;
  a)
    run hyperprior 0.0067 12 "$w/hyperprior-q1.pt" hyperprior-q2
    run hyperprior 0.013 12 "$init/hyperprior-l0.013.pt" hyperprior-q3
    run mean-scale 0.0067 8 "$w/mean-scale-q1.pt" mean-scale-q2 ;;
  b)
    run mean-scale 0.013 8 "$init/mean-scale-l0.013.pt" mean-scale-q3
    run gmm 0.0067 8 "$w/gmm-q1.pt" gmm-q2
    run gmm 0.013 8 "$init/gmm-l0.013.pt" gmm-q3 ;;
  high)  # the scale hyperprior at two higher rates, each from the one below it
    run hyperprior 0.018 12 "$w/hyperprior-q3.pt" hyperprior-q4
    run hyperprior 0.07 14 "$w/hyperprior-q4.pt" hyperprior-q5
    run hyperprior 0.3 14 "$w/hyperprior-q5.pt" hyperprior-q6
    run hyperprior 1.0 14 "$w/hyperprior-q6.pt" hyperprior-q7 ;;
  *) echo "unknown queue $queue (first, a, b or high)" >&2; exit 2 ;;
esac
