#!/bin/busybox sh
# /init of the testbed's stock-kernel VM (testbed/vm): load the few modules needed to reach
# the host's root filesystem over 9p, give it throw-away writable layers, switch to it and
# run the command the host left in the control share.  Its exit code goes back the same way.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod "/modules/$m" || echo "vm-init: insmod $m failed"; done
opts=trans=virtio,version=9p2000.L,msize=262144
mkdir -p /newroot
mount -t 9p -o "$opts,ro,cache=loose" root /newroot || { echo "vm-init: no 9p root"; poweroff -f; }
mkdir -p /ctl
mount -t 9p -o "$opts" sagin-ctl /ctl || { echo "vm-init: no control share"; poweroff -f; }
# writable, throw-away: a tmpfs upper over each host directory the guest writes into
mount -t tmpfs -o size=75% tmp /newroot/tmp
mkdir -p /newroot/tmp/.ovl
for d in $(cat /ctl/overlays); do
  u=/newroot/tmp/.ovl/$(echo "$d" | tr / _)
  mkdir -p "$u/up" "$u/work"
  mount -t overlay -o "lowerdir=/newroot$d,upperdir=$u/up,workdir=$u/work" ovl "/newroot$d" \
    || echo "vm-init: overlay on $d failed"
done
mount -t tmpfs run /newroot/run
while read -r tag path; do
  mkdir -p "/newroot$path" 2>/dev/null
  mount -t 9p -o "$opts" "$tag" "/newroot$path" || echo "vm-init: rw share $path failed"
done < /ctl/shares
mkdir -p /newroot/run/sagin-ctl
mount --move /ctl /newroot/run/sagin-ctl
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/sh /run/sagin-ctl/stage2.sh
