# Sourced by tools/*: re-executes the calling script as root (through sudo when
# not root), because installing packages, loading BPF and making netns need it.
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo -E "$0" "$@"
  fi
  echo "$(basename "$0"): needs root (and sudo is not installed): run it as root" >&2
  exit 3
fi
