import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Workers, the CLI and the node run the built package: build it first, every run.
    globalSetup: ['test/build-dist.ts'],
  },
});
