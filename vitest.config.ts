import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests drive real gdb and QEMU; two cores cannot take many at once.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
