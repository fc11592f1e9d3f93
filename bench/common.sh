# Helpers the benchmark scripts share; sourced, not run.

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }
# Whether nothing listens on 127.0.0.1:$1 (a bash socket: no tool, no fork per try).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A field of /proc/$1/status in kB (VmRSS, VmHWM).
proc_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
