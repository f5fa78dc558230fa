#!/bin/sh
# PID 1 of a roamtun Wi-Fi lab guest: user-mode-linux with cfg80211, mac80211
# and mac80211_hwsim built in (../shared/lab/uml-wifi), the host's / as a
# read-only hostfs root. The guest's own state lives in its tmpfs /run.
#
# wpa_cli and hostapd_cli need a writable /tmp for their sockets: the guest
# gets a tmpfs there, and the host's /tmp stays readable at /run/host-tmp
# (WifiGuest.GuestPath maps host paths).
#
# It is an agent driven by the host over the first serial line (ttyS0, two
# FIFOs on the host): each request is one line "ID BASE64-SCRIPT"; the script
# runs under sh with stdin from /dev/null and its stdout+stderr captured; the
# answer is one line "RT-DONE ID EXIT-CODE BASE64-OUTPUT". Requests run one at
# a time; a script that starts a daemon must redirect the daemon's output and
# put it in the background. The host drives every wait, so an idle guest has
# nothing to stall on.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin TMPDIR=/run HOME=/run
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmpfs /run
mkdir -p /run/netns /run/lock /run/host-tmp
mount --bind /tmp /run/host-tmp
mount -t tmpfs tmpfs /tmp
ip link set lo up
# Raw: no echo, no CR/LF translation, no flow control characters.
stty -F /dev/ttyS0 raw -echo -ixon -ixoff 2>&1
exec 3</dev/ttyS0 4>/dev/ttyS0
echo "RT-WIFI-READY kernel=$(uname -r)"
printf 'RT-READY %s\n' "$(uname -r)" >&4
# One request at a time: the host sends the next line only after the answer
# to the last, so head (reading the tty in blocks, unlike read's byte-by-byte
# syscalls, each slow under UML) never swallows part of the next request.
while line=$(head -n 1 <&3) && [ -n "$line" ]; do
    id=${line%% *} req=${line#* }
    case $id in
    '' | *[!0-9]*) continue ;; # line noise
    esac
    if printf '%s' "$req" | base64 -d > /run/.rt-req 2>/dev/null; then
        sh /run/.rt-req </dev/null >/run/.rt-out 2>&1
        rc=$?
    else
        echo "agent: request $id is not base64" >/run/.rt-out
        rc=254
    fi
    printf 'RT-DONE %s %s %s\n' "$id" "$rc" "$(base64 -w0 /run/.rt-out)" >&4
done
echo "RT-GUEST-HALT (serial line closed)"
echo o > /proc/sysrq-trigger
sleep 30
