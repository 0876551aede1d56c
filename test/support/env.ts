/** Where the shared test services are. The only place tests read the environment. */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
export const REDIS_SERVER_BIN = process.env.REDIS_SERVER_BIN ?? 'redis-server'
/** Sentinel mode: this binary is started as `<bin> <conf> --sentinel` (redis-server itself unless set). */
export const REDIS_SENTINEL_BIN = process.env.REDIS_SENTINEL_BIN ?? REDIS_SERVER_BIN
/** redis-cli, for `--cluster create/reshard`. */
export const REDIS_CLI_BIN = process.env.REDIS_CLI_BIN ?? 'redis-cli'
