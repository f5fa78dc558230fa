#!/bin/sh
# PID 1 of a roamtun lab guest (user-mode-linux, the host's / as a read-only
# hostfs root). Kernel parameters the kernel does not know reach us as
# environment: rt_script names the role script to run (in the lab dir).
# Nothing here writes to the host: /run is the guest's own tmpfs.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin TMPDIR=/run HOME=/run
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmpfs /run
mkdir -p /run/lock /run/ppp
ip link set lo up
M=/usr/lib/uml/modules/$(uname -r)/kernel
for m in drivers/net/slip/slhc.ko lib/crc-ccitt.ko drivers/net/ppp/ppp_generic.ko drivers/net/ppp/ppp_async.ko \
         drivers/net/ppp/ppp_deflate.ko drivers/net/ppp/bsd_comp.ko; do
    insmod $M/$m 2>/dev/null || echo "RT-INSMOD-FAILED $m"
done
echo "RT-GUEST-READY kernel=$(uname -r)"
if [ -n "${rt_script:-}" ]; then
    . "$rt_script"
fi
echo "RT-GUEST-HALT"
echo o > /proc/sysrq-trigger
sleep 30
