import * as grpc from '@grpc/grpc-js'
import type { Logger } from '../../src/log.ts'
import { services } from '../protos.ts'
import type { TokenTable } from '../auth.ts'
import { reportProblem, type FleetTelemetry } from '../fleet-telemetry.ts'
import type * as pb from '../generated/types.ts'
import { authorize, toStatus } from './status.ts'

export interface TelemetryDeps {
  telemetry: FleetTelemetry
  tokens: TokenTable | undefined
  log: Logger
}

/**
 * `outrider.v1.Telemetry`: folds every report into the fleet-wide per-route
 * totals (Operator.GetTraffic) and, as increases at the time of arrival,
 * into the windowed analytics (Operator.GetAnalytics), and relays it to the
 * other replicas (fleet-telemetry.ts). The control plane's clock places
 * them, not the node's: node clocks may be skewed.
 */
export function register (server: grpc.Server, deps: TelemetryDeps): { endAll (): void } {
  // Report streams last as long as their data plane: shutdown answers them itself.
  const open = new Map<grpc.ServerReadableStream<pb.TelemetryReport, pb.ReportSummary>, () => void>()
  server.addService(services().Telemetry.service, {
    Report: (call: grpc.ServerReadableStream<pb.TelemetryReport, pb.ReportSummary>, callback: grpc.sendUnaryData<pb.ReportSummary>) => {
      try {
        authorize(call.metadata, deps.tokens, 'data-plane')
      } catch (err) {
        callback(toStatus(err, deps.log) as grpc.ServiceError, null)
        return
      }
      let accepted = 0
      let answered = false
      const answer = (status: grpc.ServiceError | null): void => {
        if (answered) return
        answered = true
        open.delete(call)
        callback(status, status === null ? { accepted } : null)
      }
      open.set(call, () => { answer(Object.assign(new Error('control plane shutting down'), { code: grpc.status.UNAVAILABLE, details: 'control plane shutting down', metadata: new grpc.Metadata() })) })
      call.on('data', (report: pb.TelemetryReport) => {
        if (report.nodeId === '' || answered) return
        const problem = reportProblem(report)
        if (problem !== undefined) {
          // Refused whole, before it is counted: its histograms would cost memory per interval for a week.
          deps.log.warn('telemetry report refused', { node: report.nodeId, problem })
          answer(Object.assign(new Error(problem), { code: grpc.status.INVALID_ARGUMENT, details: problem, metadata: new grpc.Metadata() }))
          return
        }
        // A duplicate is still accepted: the node did nothing wrong, it is just counted once.
        deps.telemetry.local(report)
        accepted++
      })
      call.on('end', () => { answer(null) })
      call.on('error', () => { open.delete(call) })
      call.on('cancelled', () => { open.delete(call) })
    },
  })
  return {
    endAll () {
      for (const end of [...open.values()]) end()
    },
  }
}

