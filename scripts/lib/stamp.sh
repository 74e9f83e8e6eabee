# The machine and commit every report is stamped with, exported once for the
# load and fault scripts (and read from the environment by their Python and
# k6 report writers): STAMP_COMMIT (short hash, "-dirty" when the tree
# differs), STAMP_CORES, STAMP_MEMORY, STAMP_KERNEL.
STAMP_COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo -dirty)"
STAMP_CORES=$(nproc)
STAMP_KERNEL=$(uname -r)
STAMP_MEMORY="$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
export STAMP_COMMIT STAMP_CORES STAMP_KERNEL STAMP_MEMORY
