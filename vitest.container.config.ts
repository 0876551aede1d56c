import { defineConfig } from 'vitest/config'

// `npm run test:container`: the production image, built from the Dockerfile and run against the test Redis and
// Postgres. Apart from `npm test` because a cold build (base image, npm ci, tsc) takes minutes and needs Docker.
export default defineConfig({
  test: {
    include: ['test/container/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 1,
    testTimeout: 120_000,
    hookTimeout: 50 * 60_000,
    globalSetup: ['test/support/global-setup.ts'],
  },
})
