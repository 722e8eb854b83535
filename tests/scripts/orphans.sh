#!/bin/sh
# Child script for tests/reaping.rs: makes orphans and reports whether the
# init reaps them.
#
# Usage: orphans.sh COUNT POLLS
#
# Starts COUNT `sleep` processes whose parent exits at once, so each is
# re-parented to the nearest subreaper or to PID 1, and prints
# "orphan PID parent PPID" for each. Then kills them, waits until each one
# has died, and polls up to POLLS times, 20 ms apart, until every orphan is
# gone from /proc. Last, it prints:
#   unreaped N       orphans still in /proc (as zombies)
#   zombies N        zombies in /proc whose parent is this script's parent
#   zombies-total N  zombies anywhere in /proc
# The script waits for its own children before each check, so they never
# count.

count=$1
polls=$2

# Prints the state and parent pid of process $1, such as "Z 1", or nothing
# once the process is gone. The command name in /proc/PID/stat is
# in parentheses and may contain spaces, so the fields after the last ") "
# are used.
state_of() {
    line=
    read -r line 2>/dev/null < "/proc/$1/stat" || return 0
    rest=${line##*) }
    set -- $rest
    echo "$1 $2"
}

# Sets `unreaped` to the number of orphans still in /proc.
count_unreaped() {
    unreaped=0
    for orphan in $orphans; do
        if [ -n "$(state_of "$orphan")" ]; then
            unreaped=$((unreaped + 1))
        fi
    done
}

orphans=
i=0
while [ "$i" -lt "$count" ]; do
    # The subshell exits as soon as it has started the sleep, which orphans
    # it. Its output goes to /dev/null so the command substitution does not
    # wait for it.
    orphan=$( (sleep 60 >/dev/null 2>&1 & echo $!) )
    orphans="$orphans $orphan"
    i=$((i + 1))
done

for orphan in $orphans; do
    parent=
    while read -r key value; do
        if [ "$key" = PPid: ]; then
            parent=$value
        fi
    done < "/proc/$orphan/status"
    echo "orphan $orphan parent $parent"
done

kill $orphans

# Wait until every orphan has died, whether or not anyone reaps it.
for orphan in $orphans; do
    while :; do
        set -- $(state_of "$orphan")
        if [ $# -eq 0 ] || [ "$1" = Z ]; then
            break
        fi
        sleep 0.02
    done
done

count_unreaped
i=0
while [ "$unreaped" -gt 0 ] && [ "$i" -lt "$polls" ]; do
    sleep 0.02
    count_unreaped
    i=$((i + 1))
done
echo "unreaped $unreaped"

zombies=0
zombies_total=0
for stat in /proc/[0-9]*/stat; do
    pid=${stat#/proc/}
    pid=${pid%/stat}
    set -- $(state_of "$pid")
    if [ "$1" = Z ]; then
        zombies_total=$((zombies_total + 1))
        if [ "$2" = "$PPID" ]; then
            zombies=$((zombies + 1))
        fi
    fi
done
echo "zombies $zombies"
echo "zombies-total $zombies_total"
