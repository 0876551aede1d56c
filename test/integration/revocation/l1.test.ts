import { revocationMatrix } from '../../support/revocation-matrix.js'

// L1 on both instances: the instance that served /invalidate forgets at once; the other hears it by pub/sub.
revocationMatrix({
  name: 'L1 on',
  env: { L1_CACHE_TTL_MS: '30000' },
  boundMs: (ending) => (ending.via === 'sql' ? 1000 : 100),
})
