# Sourced by the scripts: where the native stack keeps its state, where cargo
# builds, and the tool paths a fresh shell may not have (cargo install, pip).
export PATH="$HOME/.cargo/bin:$PATH:$(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
export STACK_DIR="${STACK_DIR:-$PWD/.stack}"
# One build cache per machine, shared by every checkout: a fresh clone on a
# machine that has built the project before recompiles only our own crates,
# not the ~400 dependencies. A new machine simply starts it empty.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/video-platform/target}"
