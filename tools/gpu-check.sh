#!/usr/bin/env bash
# The whole GPU check, one command, on an offline node that has its own CUDA build of PyTorch:
#
#   tools/gpu-check.sh WHEELS FMNIST OUT
#
# WHEELS: a wheelhouse made where the package index is reachable (python -m bench.wheelhouse);
# FMNIST: a folder with Fashion-MNIST's four gzipped IDX files (its training file may hold only
# the first N images); OUT: where the results go. Run from a vae-bench checkout. Steps:
#   1. install vae-bench's needs from WHEELS into the node's Python ($PYTHON, default python3),
#      keeping its torch and every package it has in range; the checkout's code runs (PYTHONPATH);
#   2. pytest -m cuda (tests/test_cuda.py), a JUnit report in OUT;
#   3. python -m bench.perf --device cuda: the reference loop against the harness, IW bound
#      k=1000 and 5000 on the 10k test images, trials/hour of an 8-point z_dim grid with
#      study.workers 1, 4 and 8; into
#      OUT/RESULTS.md, a copy of benchmarks/RESULTS.md whose CPU block stays as it was.
# OUT gets gpu-check.log (everything printed), environment.txt, cuda-tests.xml, RESULTS.md.
# The check takes at most GPU_CHECK_S seconds (560); install gets at most 90, the tests
# GPU_CHECK_TESTS_S (200), perf what is left. A step that fails or runs out does not stop the
# next; the exit status is the number of failed steps. GPU_CHECK_DEVICE=cpu rehearses the check
# on a machine without a GPU.
set -uo pipefail
if [ $# -ne 3 ]; then
    echo "error: usage: tools/gpu-check.sh WHEELS FMNIST OUT" >&2
    exit 2
fi
wheels=$(realpath "$1") fmnist=$(realpath "$2") out=$(realpath -m "$3")
py=${PYTHON:-python3}
for needed in "$wheels/requirements.txt" "$fmnist/t10k-images-idx3-ubyte.gz"; do
    [ -f "$needed" ] || { echo "error: no $needed" >&2; exit 2; }
done
mkdir -p "$out"
exec > >(tee "$out/gpu-check.log") 2>&1
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 TQDM_DISABLE=1
scratch=$(mktemp -d)
failed=0
summary=()
total=${GPU_CHECK_S:-560}  # seconds for the whole check; the last step gets what is left

step() {  # step NAME LIMIT_S COMMAND...: run it (within what is left), note status and seconds
    local name=$1 limit=$2 started=$SECONDS rc
    shift 2
    limit=$((limit < total - SECONDS ? limit : total - SECONDS))
    echo "=== $name (limit ${limit} s): $*"
    timeout --kill-after=10 "$limit" bash -c "$(printf '%q ' "$@")"
    rc=$?
    [ $rc -eq 0 ] || failed=$((failed + 1))
    summary+=("$name: exit $rc in $((SECONDS - started)) s")
    echo "=== $name: exit $rc in $((SECONDS - started)) s"
}

environment() {
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
    "$py" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, \
'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
    nproc
    "$py" -m pip list --format=freeze
}

install_needs() {  # as README says; if pip cannot resolve, every wheel with --no-deps (flagged)
    "$py" -m pip install --quiet --no-index --find-links "$wheels" -r "$wheels/requirements.txt" &&
        return 0
    echo "the resolving install failed: installing every wheel with --no-deps instead"
    "$py" -m pip install --quiet --no-index --no-deps $(ls "$wheels"/*.whl | grep -v /vae_bench-)
    return 1
}

run_perf() {
    cp benchmarks/RESULTS.md "$out/RESULTS.md"
    "$py" -m bench.perf --device "${GPU_CHECK_DEVICE:-cuda}" --root "$scratch/data" --seeds 0 1 --k 1000 5000 \
        --trials 8 --trials-workers 4 8 --out "$out/RESULTS.md" \
        data.val_size=5000 data.download=false "data.system_dirs=[$fmnist]"
}

export py wheels fmnist out scratch
export -f install_needs run_perf
environment > "$out/environment.txt" 2>&1
step install 90 install_needs
step "pytest -m cuda" "${GPU_CHECK_TESTS_S:-200}" \
    "$py" -m pytest -o addopts=-ra -m cuda -q -p no:cacheprovider tests/test_cuda.py \
    --junitxml "$out/cuda-tests.xml" --durations=5
step "bench.perf --device ${GPU_CHECK_DEVICE:-cuda}" "$total" run_perf
echo "=== summary"
printf '%s\n' "${summary[@]}"
rm -rf "$scratch"
exit $failed
