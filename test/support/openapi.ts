import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js'
import addFormatsModule from 'ajv-formats'
import type { FastifyInstance } from 'fastify'
import { parse } from 'yaml'

/**
 * openapi.yaml as a response validator, so the document cannot drift from the code: startTestApp (test/support/app.ts)
 * runs every injected response through `assertMatchesOpenApi`. Built with ajv's draft 2020-12 (OpenAPI 3.1 schemas
 * are JSON Schema 2020-12) and ajv-formats; compiled once per test worker, each (operation, status, media type)
 * validator compiled on first use.
 */

export const OPENAPI_PATH = fileURLToPath(new URL('../../openapi.yaml', import.meta.url))

type Json = Record<string, unknown>

interface HeaderObject {
  required?: boolean
  schema?: Json
  $ref?: string
}

interface ResponseObject {
  description?: string
  headers?: Record<string, HeaderObject>
  content?: Record<string, { schema?: Json }>
  $ref?: string
}

interface Operation {
  responses?: Record<string, ResponseObject>
}

export interface OpenApiDocument {
  openapi: string
  paths: Record<string, Record<string, Operation>>
  components: Json
}

/** Thrown when a response is not what openapi.yaml says; the message names the operation and every problem. */
export class OpenApiMismatch extends Error {
  override name = 'OpenApiMismatch'
}

// ajv-formats is CommonJS with `exports.default`: depending on the loader's interop the default import is the
// function itself or the module object holding it.
type AddFormats = (ajv: Ajv2020) => unknown
const formatsExport = addFormatsModule as unknown as AddFormats | { default: AddFormats }
const addFormats: AddFormats = typeof formatsExport === 'function' ? formatsExport : formatsExport.default

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']
/** Keywords OpenAPI adds to JSON Schema; ajv is told about them and otherwise stays strict. */
const OPENAPI_KEYWORDS = ['discriminator', 'xml', 'externalDocs', 'example']
export const DOC_ID = 'https://studio-session-cache.local/openapi.json'

let loaded: { doc: OpenApiDocument; ajv: Ajv2020; validators: Map<string, ValidateFunction> } | undefined

export function loadOpenApi(path = OPENAPI_PATH): OpenApiDocument {
  return parse(readFileSync(path, 'utf8')) as OpenApiDocument
}

/**
 * An ajv (draft 2020-12, formats on, strict) holding `doc` under DOC_ID: compile `{ $ref: \`${DOC_ID}#/...\` }` to get
 * a validator for any schema in the document.
 */
export function createOpenApiAjv(doc: OpenApiDocument): Ajv2020 {
  const ajv = new Ajv2020({ allErrors: true, strict: true, strictRequired: false, validateFormats: true })
  addFormats(ajv)
  // `components` and `paths` are declared as (inert) keywords so that the document root compiles as a schema; the
  // response schemas are then compiled as {$ref: DOC_ID#/paths/...} and their #/components/... refs resolve in place.
  ajv.addVocabulary([...OPENAPI_KEYWORDS, 'components', 'paths'])
  ajv.addSchema({ $id: DOC_ID, components: doc.components, paths: doc.paths }, undefined, undefined, false)
  return ajv
}

function state() {
  if (loaded) return loaded
  const doc = loadOpenApi()
  loaded = { doc, ajv: createOpenApiAjv(doc), validators: new Map() }
  return loaded
}

const pointer = (...parts: string[]) => parts.map((p) => p.replaceAll('~', '~0').replaceAll('/', '~1')).join('/')

function resolve<T extends { $ref?: string }>(doc: OpenApiDocument, value: T): { value: T; at: string | undefined } {
  if (!value.$ref) return { value, at: undefined }
  if (!value.$ref.startsWith('#/')) throw new Error(`openapi.yaml: only local $refs are supported (${value.$ref})`)
  let node: unknown = doc
  for (const raw of value.$ref.slice(2).split('/')) {
    node = (node as Json)[raw.replaceAll('~1', '/').replaceAll('~0', '~')]
    if (node === undefined) throw new Error(`openapi.yaml: unresolvable $ref ${value.$ref}`)
  }
  return { value: node as T, at: value.$ref.slice(1) }
}

function validatorAt(schemaPointer: string): ValidateFunction {
  const s = state()
  let validate = s.validators.get(schemaPointer)
  if (!validate) {
    validate = s.ajv.compile({ $ref: `${DOC_ID}#${schemaPointer}` })
    s.validators.set(schemaPointer, validate)
  }
  return validate
}

function describeErrors(validate: ValidateFunction): string {
  return (validate.errors ?? [])
    .map((e) => `    ${e.instancePath || '(body)'} ${e.message ?? ''} ${JSON.stringify(e.params)} [${e.schemaPath}]`)
    .join('\n')
}

export interface ResponseLike {
  statusCode: number
  headers?: Record<string, string | string[] | number | undefined>
  /** Raw body text, or the parsed value. */
  body: unknown
}

/**
 * Asserts that a response is one openapi.yaml documents: the operation exists (or the answer is the documented 404
 * for routes that do not), the status is listed, the media type is one of its content types, JSON bodies match the
 * schema, and required headers are present and valid. Bodies of non-JSON media types (/metrics) are not checked.
 */
export function assertMatchesOpenApi(
  method: string,
  url: string,
  statusCode: number,
  body: unknown,
  headers: ResponseLike['headers'] = undefined,
): void {
  const { doc } = state()
  const path = url.split('?')[0] ?? url
  const verb = method.toLowerCase()
  const pathItem = doc.paths[path]
  // HEAD is answered for every GET route; its response is the GET's without a body.
  const operation = pathItem?.[verb] ?? (verb === 'head' ? pathItem?.get : undefined)
  const where = `${method.toUpperCase()} ${path} → ${statusCode}`

  let response: ResponseObject
  let responsePointer: string
  if (!operation || !METHODS.includes(verb)) {
    if (statusCode !== 404) {
      throw new OpenApiMismatch(`${where}: openapi.yaml documents no ${method.toUpperCase()} ${path}, so only the 404 answer is expected`)
    }
    ;({ value: response } = resolve(doc, { $ref: '#/components/responses/ClientError' } as ResponseObject))
    responsePointer = '/components/responses/ClientError'
  } else {
    const opVerb = pathItem?.[verb] ? verb : 'get'
    const responses = operation.responses ?? {}
    const key = [String(statusCode), `${String(statusCode)[0]}XX`, 'default'].find((k) => responses[k] !== undefined)
    if (key === undefined) {
      throw new OpenApiMismatch(
        `${where}: status not documented (documented: ${Object.keys(responses).join(', ')}); body: ${preview(body)}`,
      )
    }
    const resolved = resolve(doc, responses[key]!)
    response = resolved.value
    responsePointer = resolved.at ?? `/${pointer('paths', path, opVerb, 'responses', key)}`
  }

  const problems: string[] = []
  const lowerHeaders = Object.fromEntries(Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]))

  for (const [name, raw] of Object.entries(response.headers ?? {})) {
    const { value: header, at } = resolve(doc, raw)
    const present = lowerHeaders[name.toLowerCase()]
    if (present === undefined) {
      if (header.required && headers !== undefined) problems.push(`  header ${name} is required but missing`)
      continue
    }
    if (!header.schema) continue
    const schemaAt = at ? `${at}/schema` : `${responsePointer}/${pointer('headers', name, 'schema')}`
    const validate = validatorAt(schemaAt)
    const text = Array.isArray(present) ? present.join(', ') : String(present)
    const type = header.schema.type ?? (resolve(doc, header.schema as { $ref?: string }).value as Json).type
    const value = type === 'integer' || type === 'number' ? Number(text) : text
    if (!validate(value)) problems.push(`  header ${name}: ${JSON.stringify(text)}\n${describeErrors(validate)}`)
  }

  const content = response.content ?? {}
  const mediaTypes = Object.keys(content)
  const declared = lowerHeaders['content-type']
  const mediaType = declared === undefined ? undefined : String(declared).split(';')[0]!.trim().toLowerCase()
  const isHead = verb === 'head'
  if (mediaTypes.length > 0 && !isHead) {
    const chosen = mediaType ?? (typeof body === 'string' ? undefined : 'application/json')
    if (chosen === undefined || !mediaTypes.includes(chosen)) {
      problems.push(`  content-type ${JSON.stringify(declared)} is not one of ${mediaTypes.join(', ')}`)
    } else if (chosen === 'application/json' || chosen.endsWith('+json')) {
      let parsed: unknown = body
      if (typeof body === 'string') {
        try {
          parsed = JSON.parse(body)
        } catch {
          problems.push(`  body is not JSON: ${preview(body)}`)
        }
      }
      if (problems.length === 0 && content[chosen]?.schema) {
        const validate = validatorAt(`${responsePointer}/${pointer('content', chosen, 'schema')}`)
        if (!validate(parsed)) problems.push(`  body ${preview(parsed)}\n${describeErrors(validate)}`)
      }
    }
  }

  if (problems.length > 0) {
    throw new OpenApiMismatch(`${where} does not match openapi.yaml:\n${problems.join('\n')}`)
  }
}

/** The same check for a light-my-request (app.inject) response. */
export function assertInjectedMatchesOpenApi(response: {
  statusCode: number
  headers: Record<string, string | string[] | number | undefined>
  body: string
  raw: { req: { method?: string; url?: string } }
}): void {
  assertMatchesOpenApi(response.raw.req.method ?? 'GET', response.raw.req.url ?? '/', response.statusCode, response.body, response.headers)
}

/**
 * Wraps `app.inject` so that every response of its promise form (`app.inject({...})`, `app.inject('/url')`) is checked
 * with assertInjectedMatchesOpenApi before the test sees it: a drift fails the test at the request that showed it.
 * The chain (`app.inject().get(...)`) and callback forms pass through unchecked.
 */
export function checkResponsesAgainstOpenApi(app: Pick<FastifyInstance, 'inject'>): void {
  const original = app.inject.bind(app) as (...args: unknown[]) => unknown
  const inject = (...args: unknown[]) => {
    const [options, callback] = args
    if (options === undefined || callback !== undefined) return original(...args)
    return (original(options) as Promise<Parameters<typeof assertInjectedMatchesOpenApi>[0]>).then((response) => {
      assertInjectedMatchesOpenApi(response)
      return response
    })
  }
  app.inject = inject as FastifyInstance['inject']
}

function preview(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value)
  return text === undefined ? String(value) : text.length > 300 ? `${text.slice(0, 300)}…` : text
}
