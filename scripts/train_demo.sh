#!/usr/bin/env bash
# Train demo weights from scratch in one command: the data of swiftcuda/assets/demo_r18.md, one
# training stage with the matching loss, then the held-out scores of the new weights beside the
# shipped ones. Meant for a GPU (the CPU stages of demo_r18.md took hours each); every setting
# can be changed from the environment, which is also how the test runs it at a tiny size.
#
#   bash scripts/train_demo.sh [WORK_DIR]            # default WORK_DIR: ./demo_train
#   STEPS=20000 BATCH=16 bash scripts/train_demo.sh /data/demo_train
#
# Data folders already in WORK_DIR are reused; a finished run is not trained again (the run
# folder must be removed or RUN changed to train anew). Nothing is shipped: copy
# WORK_DIR/$RUN-fp16.pt to swiftcuda/assets/demo_r18.pt by hand if its mean held-out J&F beats the
# shipped weights' by more than the renderings' spread.
set -euo pipefail

WORK=${1:-demo_train}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-12000}
BATCH=${BATCH:-16}
CROP=${CROP:-256x448}
SCALES=${SCALES:-0.5,1.0}
LR=${LR:-2e-4}
MATCHING=${MATCHING:-0.5}
WORKERS=${WORKERS:-}             # empty: swiftcuda's default (up to 8 on a GPU)
SHAPES=${SHAPES:-600}             # random-shape videos per shapes set (two sets)
SIZE=${SIZE:-}                    # e.g. 90x160 (HxW) to render every video small (tests)
FRAMES=${FRAMES:-}                # at most this many frames per real-shape video (tests)
RUN=${RUN:-run-gpu}

TRAIN_SEQUENCES=${TRAIN_SEQUENCES:-bike-packing,blackswan,breakdance,camel,car-roundabout,car-shadow,cows,dance-twirl,drift-chicane,drift-straight,goat,mbike-trick,motocross-jump,paragliding-launch,parkour}
HELD_OUT=${HELD_OUT:-dog,horsejump-high,kite-surf,scooter-black,libby}

mkdir -p "$WORK"
cd "$WORK"
size_args=(${SIZE:+--size "$SIZE"})
frame_args=(${FRAMES:+--frames "$FRAMES"})

make_set() {  # make_set DIR ARGS...: render a data set unless it is there
    local dir=$1
    shift
    [ -d "$dir" ] || swiftcuda make-testset --out "$dir" "$@" > "$dir.log" 2>&1
}

echo "== data in $PWD"
pids=()
for seed in 1 2 3; do
    make_set "data-seed$seed" --sequences "$TRAIN_SEQUENCES" --seed "$seed" "${size_args[@]}" "${frame_args[@]}" & pids+=($!)
done
make_set shapes-seed7 --random-shapes "$SHAPES" --seed 7 --frames 12 "${size_args[@]}" & pids+=($!)
make_set shapes-seed8 --random-shapes "$SHAPES" --seed 8 --frames 16 "${size_args[@]}" & pids+=($!)
make_set heldout --sequences "$HELD_OUT" --seed 100 "${size_args[@]}" "${frame_args[@]}" & pids+=($!)
make_set heldout-val101 --sequences "$HELD_OUT" --seed 101 "${size_args[@]}" "${frame_args[@]}" & pids+=($!)
make_set heldout-val102 --sequences "$HELD_OUT" --seed 102 "${size_args[@]}" "${frame_args[@]}" & pids+=($!)
for pid in "${pids[@]}"; do wait "$pid"; done

echo "== train $RUN ($STEPS steps of $BATCH clips at $CROP on $DEVICE)"
if [ ! -f "$RUN/model.pt" ]; then
    resume=()
    [ -f "$RUN/last.pt" ] && resume=(--resume)
    swiftcuda train --data shapes-seed7 --data shapes-seed8 --data data-seed1 --data data-seed2 --data data-seed3 \
        --out "$RUN" --steps "$STEPS" --batch-size "$BATCH" --crop "$CROP" --scale-range "$SCALES" \
        --lr "$LR" --warmup $((STEPS / 40 + 1)) --save-every $((STEPS / 8 + 1)) --keep 8 --seed 11 \
        --matching-loss "$MATCHING" --freeze-bn no --amp on --device "$DEVICE" \
        ${WORKERS:+--workers "$WORKERS"} "${resume[@]}"
fi
python -c "import sys; from swiftcuda.train import export_weights; export_weights(sys.argv[1], sys.argv[2])" \
    "$RUN/model.pt" "$RUN-fp16.pt"

mkdir -p scores
# Three renderings of the held-out sequences: which textures a sequence gets moves its J&F by more
# than most training changes do, so weights are compared on the mean over the three.
echo "== held-out J&F: renderings with seeds 100, 101, 102, and their mean"
for weights in "$RUN-fp16.pt" demo; do
    name=$(basename "$weights" .pt)
    scores=()
    for set in heldout heldout-val101 heldout-val102; do
        swiftcuda eval --davis "$set" --set val --weights "$weights" --device "$DEVICE" \
            --out "scores/$set-$name" --overwrite > "scores/$set-$name.log" 2>&1
        scores+=("$(sed -n 2p "scores/$set-$name/global_results-val.csv" | cut -d, -f1)")
    done
    mean=$(python -c "import sys; print(f'{sum(map(float, sys.argv[1:])) / 3:.3f}')" "${scores[@]}")
    echo "J&F  $weights  ${scores[*]}  mean $mean"
done
