#!/bin/sh
# make_state.sh SIZE_MB DIR: fill DIR with SIZE_MB of changed files, as an agent's work leaves them in a
# sandbox's writable layer: SIZE_MB * 10 files of 50 KiB, plus one file of SIZE_MB / 2 MiB. 200 gives 2,000
# files of 50 KiB and one of 100 MiB; 20 gives 200 files and one of 10 MiB.
#
# Random data (/dev/urandom): nothing compresses or deduplicates it, so the filesystem really holds it all.
# Runs inside a sandbox (bench/snapshots.py uploads it and runs `sh make_state.sh ...`) with POSIX sh, `head`,
# `ls`, `wc`, `awk` and `du` only: busybox and Debian alike. Prints one line:
# "files <count> bytes <total size> kib <du -sk DIR>".
# Nothing is synced: the data is left to the kernel's writeback, as a program's writes are.
set -eu

usage="usage: make_state.sh SIZE_MB DIR (SIZE_MB an even number >= 2)"
size=${1:?$usage}
dir=${2:?$usage}
case $size in
'' | *[!0-9]*)
    echo "$usage" >&2
    exit 2
    ;;
esac
if [ "$size" -lt 2 ] || [ $((size % 2)) -ne 0 ]; then
    echo "$usage" >&2
    exit 2
fi

files=$((size * 10))
big_mib=$((size / 2))
mkdir -p "$dir/small"

i=1
while [ "$i" -le "$files" ]; do
    head -c 51200 /dev/urandom >"$dir/small/f$i"
    i=$((i + 1))
done
# head, not dd: head reads until it has the count, where dd would keep a short read of a block
head -c $((big_mib * 1048576)) /dev/urandom >"$dir/big"

n=$(($(ls "$dir/small" | wc -l) + 1))
bytes=$(wc -c "$dir"/small/f* "$dir/big" | tail -n 1 | awk '{print $1}')
echo "files $n bytes $bytes kib $(du -sk "$dir" | cut -f1)"
