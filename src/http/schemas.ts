import Type from 'typebox'

/** Printable ASCII, no spaces: session tokens are opaque but never carry control characters or whitespace. */
export const TOKEN_PATTERN = '^[\\x21-\\x7e]+$'

export const tokenSchema = (maxLength: number) =>
  Type.String({ minLength: 1, maxLength, pattern: TOKEN_PATTERN, description: 'Opaque session token.' })

/**
 * The canonical 8-4-4-4-12 hex form only. ajv-formats' "uuid" also accepts a "urn:uuid:" prefix, which Postgres refuses
 * (the request would end as a 503) and which would miss the cache's id index; `format` stays for the documentation.
 */
export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'

const uuidSchema = (description: string) => Type.String({ format: 'uuid', pattern: UUID_PATTERN, description })

export const ValidateBody = (maxLength: number) =>
  Type.Object({ token: tokenSchema(maxLength) }, { additionalProperties: false })

export const InvalidateBody = (maxLength: number) =>
  Type.Object(
    {
      token: Type.Optional(tokenSchema(maxLength)),
      sessionId: Type.Optional(uuidSchema('user_sessions.id of the session to invalidate.')),
      userId: Type.Optional(uuidSchema('users.id whose sessions are all invalidated.')),
      revoke: Type.Optional(Type.Boolean()),
    },
    { additionalProperties: false },
  )

const NullableString = Type.Union([Type.String(), Type.Null()])
// Formats for the reader (openapi.yaml says the same): the serializer writes these strings as they are.
const Uuid = Type.String({ format: 'uuid' })
const DateTime = Type.String({ format: 'date-time' })

/** One flat object rather than oneOf: fast-json-stringify serialises it without trying branches. */
export const ValidateResponse = Type.Object({
  valid: Type.Boolean(),
  reason: Type.Optional(
    Type.Union([
      Type.Literal('not_found'),
      Type.Literal('expired'),
      Type.Literal('revoked'),
      Type.Literal('user_banned'),
      Type.Literal('user_deleted'),
    ]),
  ),
  session: Type.Optional(
    Type.Object({
      id: Uuid,
      userId: Uuid,
      createdAt: DateTime,
      expiresAt: DateTime,
      lastActivityAt: Type.Union([DateTime, Type.Null()]),
    }),
  ),
  user: Type.Optional(
    Type.Object({
      id: Uuid,
      email: Type.String(),
      firstName: NullableString,
      lastName: NullableString,
      username: NullableString,
    }),
  ),
  source: Type.Optional(Type.Union([Type.Literal('l1'), Type.Literal('redis'), Type.Literal('postgres')])),
})

export const InvalidateResponse = Type.Object({ invalidated: Type.Integer(), revoked: Type.Integer() })

export const ErrorResponse = Type.Object({
  statusCode: Type.Integer(),
  code: Type.String(),
  error: Type.String(),
  message: Type.String(),
})
