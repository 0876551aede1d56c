import { revocationMatrix } from '../../support/revocation-matrix.js'

// The matrix on the database the service really runs on: the Studio's schema (its BEFORE UPDATE trigger, its
// row-level security, its CHECK on expiry), the migration on top, the service as the role ops/postgres/runtime-role.sql
// provisions, and the Studio's own statements ending the sessions. Same bounds as with no disturbance on the plain schema.
revocationMatrix(
  { name: 'no disturbance', boundMs: (ending) => (ending.via === 'sql' ? 1000 : 0) },
  { shape: 'studio', role: 'runtime' },
)
