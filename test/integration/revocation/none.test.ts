import { revocationMatrix } from '../../support/revocation-matrix.js'

// No disturbance: SQL revocations arrive by NOTIFY within 1 s; /invalidate's 200 means gone from Redis at once.
revocationMatrix({
  name: 'no disturbance',
  boundMs: (ending) => (ending.via === 'sql' ? 1000 : 0),
})
