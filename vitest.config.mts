import { defineConfig } from 'vitest/config';

// Tests use real processes and real sockets: forks, not threads, so a test that blocks a
// thread in sendSync or exits a process never takes a sibling test file down with it. Timeouts are generous
// because CI runs on 2 shared cores, sometimes under ASan.
export default defineConfig({
  test: {
    include: ['test/**/*.test.{ts,mts,cts,mjs,cjs,js}'],
    exclude: ['**/node_modules/**', '**/dist/**', '**/fixtures/**'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    // A hang must fail loudly, never be retried away: a retried test hides a real race.
    retry: 0,
    passWithNoTests: false,
  },
});
