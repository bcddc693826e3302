// Unit tests run everywhere; system tests need root, the real kernel and libvirt (systemd/setup.sh starts them).
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/unit/**/*.test.ts', 'test/system/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // System tests share host state (libvirt, netns names); run files one at a time.
    fileParallelism: false,
    pool: 'forks',
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
