// Where test/guest/build.sh puts the guest. Outside the checkout on purpose: QEMU runs as libvirt-qemu and
// must traverse every parent directory, which a clone under /root (mode 0700) would not allow.
export const GUEST_OUT = process.env.NODEVIRT_GUEST_OUT ?? '/var/cache/nodevirt/test-guest';

/**
 * The kernel command line every test boots the guest with (tests append their nodevirt.* flags). no_timer_check:
 * under heavy TCG load the guest kernel's IO-APIC timer check can fail and panic ("IO-APIC + timer doesn't
 * work!"), which the 50-VM benchmark hit in 24 of 50 guests; virtual machines do not need that check.
 */
export const GUEST_CMDLINE = 'console=ttyS0 quiet no_timer_check';
