# Sourced by the scripts: where the native stack keeps its state, and the
# tool paths a fresh shell may not have (cargo install, pip).
export PATH="$HOME/.cargo/bin:$PATH:$(python3 -c 'import sysconfig;print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
export STACK_DIR="${STACK_DIR:-$PWD/.stack}"
