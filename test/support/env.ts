/** Where the shared test services are. The only place tests read the environment. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
export const REDIS_SERVER_BIN = process.env.REDIS_SERVER_BIN ?? 'redis-server'
