import { defineConfig } from 'vitest/config';

// Integration tests drive real qemu-nbd, nbdkit and libvirt: they need generous timeouts,
// and libvirt-heavy files must not all run at once on a 2-core machine.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    reporters: ['default'],
  },
});
