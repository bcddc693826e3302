#!/bin/sh
# The out-of-process timer of a host change (see host-change.ts): it outlives the daemon and restores the
# checkpoint at the deadline unless the change was confirmed. Every mode serializes on DIR/lock.
#   revert-agent.sh wait    DIR DEADLINE_EPOCH_S [NETNS]   sleep, then revert unless DIR/confirmed exists
#   revert-agent.sh revert  DIR [NETNS]                    revert now (exit 4 if already confirmed)
#   revert-agent.sh confirm DIR                            mark confirmed (exit 3 if already reverted)
# DIR/restore.batch is an `ip -4 -force -batch` plan that can run twice; DIR/reverted records its outcome.
set -u
mode=$1
dir=$2

revert() {
  exec 9>>"$dir/lock"
  flock 9
  [ -e "$dir/confirmed" ] && exit 4
  [ -e "$dir/reverted" ] && exit 0
  if ip ${1:+-n "$1"} -4 -force -batch "$dir/restore.batch" 2>"$dir/restore.err"; then
    echo ok >"$dir/reverted.tmp"
  else
    echo "failed $?" >"$dir/reverted.tmp"
  fi
  mv "$dir/reverted.tmp" "$dir/reverted"
  exit 0
}

case $mode in
wait)
  deadline=$3
  while [ "$(date +%s)" -lt "$deadline" ]; do
    [ -e "$dir/confirmed" ] && exit 0
    sleep 0.2
  done
  revert "${4:-}"
  ;;
revert)
  revert "${3:-}"
  ;;
confirm)
  exec 9>>"$dir/lock"
  flock 9
  [ -e "$dir/reverted" ] && exit 3
  : >"$dir/confirmed"
  ;;
*)
  echo "usage: $0 wait|revert|confirm DIR ..." >&2
  exit 2
  ;;
esac
