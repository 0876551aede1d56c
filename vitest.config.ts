import { configDefaults, defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'packages/*/test/**/*.test.ts'],
    // The image test builds and runs Docker containers: its own script and CI step (npm run test:container).
    exclude: [...configDefaults.exclude, 'test/container/**'],
    pool: 'forks',
    // Two cores: integration files each own a schema and a key prefix, so two may run side by side.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    globalSetup: ['test/support/global-setup.ts'],
  },
})
