import * as grpc from '@grpc/grpc-js'
import type { Logger } from '../../src/log.ts'
import { ControlPlaneError, InvalidConfigError, PermissionDeniedError, UnauthenticatedError } from '../errors.ts'
import { allows, type Identity, type Role, type TokenTable } from '../auth.ts'

/** Error code → gRPC status: the one table (connect-es keeps its codes the same way). */
const STATUS: Record<string, grpc.status> = {
  INVALID_CONFIG: grpc.status.INVALID_ARGUMENT,
  BAD_REQUEST: grpc.status.INVALID_ARGUMENT,
  NOT_FOUND: grpc.status.NOT_FOUND,
  VERSION_CONFLICT: grpc.status.FAILED_PRECONDITION,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  STORE_FAILED: grpc.status.UNAVAILABLE,
}

/** Trailer carrying an InvalidConfigError's issues as JSON `[{ path, expected }]`. */
export const ISSUES_TRAILER = 'outrider-config-issues-bin'

/** Any thrown value → the status a client sees. Unknown errors are logged and become INTERNAL without detail. */
export function toStatus (err: unknown, log: Logger): Partial<grpc.StatusObject> {
  if (err instanceof ControlPlaneError) {
    const metadata = new grpc.Metadata()
    if (err instanceof InvalidConfigError) metadata.set(ISSUES_TRAILER, Buffer.from(JSON.stringify(err.issues)))
    // Status details travel in a header: one line per issue is fine, but keep it bounded.
    return { code: STATUS[err.code] ?? grpc.status.UNKNOWN, details: err.message.slice(0, 4000), metadata }
  }
  log.error('control plane call failed', { err })
  return { code: grpc.status.INTERNAL, details: 'internal error' }
}

/**
 * Who is calling, checked against the role a call needs. With no token table
 * (started with --no-auth) every caller is an anonymous admin, and only an
 * admin: data-plane calls are open too.
 */
export function authorize (metadata: grpc.Metadata, tokens: TokenTable | undefined, needed: Role): Identity {
  if (tokens === undefined) return { name: 'anonymous', role: needed === 'data-plane' ? 'data-plane' : 'admin' }
  const header = metadata.get('authorization')[0]
  const identity = tokens.identify(typeof header === 'string' ? header : undefined)
  if (identity === undefined) throw new UnauthenticatedError('a bearer token is required (authorization: Bearer <token>)')
  if (!allows(identity.role, needed)) throw new PermissionDeniedError(`"${identity.name}" has the ${identity.role} role; this call needs ${needed}`)
  return identity
}

/**
 * A unary handler from an async function: errors become statuses through
 * the table above, so each service method only says what it does.
 */
export function unary<Req, Res> (log: Logger, fn: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res> | Res): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve().then(() => fn(call.request, call)).then((res) => { callback(null, res) }, (err: unknown) => {
      callback(toStatus(err, log) as grpc.ServiceError, null)
    })
  }
}
