export { createSessionClient } from './client.js'
export type {
  CallOptions,
  HealthReport,
  InvalidateRequest,
  InvalidateResponse,
  InvalidSession,
  SessionClient,
  SessionClientLogger,
  SessionClientOptions,
  ValidateResponse,
  ValidateResult,
  ValidSession,
} from './client.js'
export { CODE_ACTIONS, actionFor, type CallerAction, type ErrorCode } from './codes.js'
export { DEFAULT_DEADLINE_MS, DEFAULT_REVOKE_DEADLINE_MS, SERVICE_WORST_CASE_MS } from './deadline.js'
export {
  isSessionServiceError,
  RevokeNotConfirmedError,
  SessionServiceConfigError,
  SessionServiceError,
  SessionServiceRequestError,
  SessionServiceServerError,
  SessionServiceUnavailableError,
  type SessionServiceErrorKind,
} from './errors.js'
export type { components, paths } from './generated/openapi.js'
