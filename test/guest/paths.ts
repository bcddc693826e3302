// Where test/guest/build.sh puts the guest. Outside the checkout on purpose: QEMU runs as libvirt-qemu and
// must traverse every parent directory, which a clone under /root (mode 0700) would not allow.
export const GUEST_OUT = process.env.NODEVIRT_GUEST_OUT ?? '/var/cache/nodevirt/test-guest';
