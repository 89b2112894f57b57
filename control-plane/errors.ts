import type { ConfigIssue } from '../src/errors.ts'

/**
 * Failures of the control plane's own logic, each with a stable `code`. The
 * gRPC layer turns them into status codes in one table
 * (`services/status.ts`); plain modules never see gRPC types.
 */
export abstract class ControlPlaneError extends Error {
  abstract readonly code: string

  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = new.target.name
  }
}

/** A document (or a route or cluster in it) the data plane's schema refuses. */
export class InvalidConfigError extends ControlPlaneError {
  readonly code = 'INVALID_CONFIG'
  readonly issues: ConfigIssue[]

  constructor (issues: ConfigIssue[], options?: { cause?: unknown }) {
    super(issues.map((i) => `${i.path === '' ? '(document)' : i.path}: ${i.expected}`).join('\n'), options)
    this.issues = issues
  }
}

/** A request that is malformed before any config is looked at (e.g. a name missing). */
export class BadRequestError extends ControlPlaneError {
  readonly code = 'BAD_REQUEST'
}

export class NotFoundError extends ControlPlaneError {
  readonly code = 'NOT_FOUND'
}

/** `if_version` did not match: someone else changed the config first. */
export class VersionConflictError extends ControlPlaneError {
  readonly code = 'VERSION_CONFLICT'
}

export class UnauthenticatedError extends ControlPlaneError {
  readonly code = 'UNAUTHENTICATED'
}

export class PermissionDeniedError extends ControlPlaneError {
  readonly code = 'PERMISSION_DENIED'
}

/** The store could not be written: the change was not made. */
export class StoreError extends ControlPlaneError {
  readonly code = 'STORE_FAILED'
}
