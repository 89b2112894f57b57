import { fileURLToPath } from 'node:url'
import * as grpc from '@grpc/grpc-js'
import * as protoLoader from '@grpc/proto-loader'

/**
 * The .proto files, loaded at run time by @grpc/proto-loader (no code
 * generation step). Field names arrive camelCase and 64-bit integers as
 * numbers (versions and counters stay far below 2^53); `generated/types.ts`
 * describes the resulting objects. The wire format is plain protobuf: any
 * gRPC client with these .proto files can talk to the control plane.
 */

export const PROTO_DIR = fileURLToPath(new URL('./proto', import.meta.url))

export const PROTO_FILES = [
  'outrider/v1/common.proto',
  'outrider/v1/config_discovery.proto',
  'outrider/v1/operator.proto',
  'outrider/v1/telemetry.proto',
] as const

const OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
}

export interface OutriderServices {
  ConfigDiscovery: grpc.ServiceClientConstructor
  Operator: grpc.ServiceClientConstructor
  Telemetry: grpc.ServiceClientConstructor
}

let loaded: OutriderServices | undefined

/** The three services (client constructors; `.service` is the server definition). Loaded once. */
export function services (): OutriderServices {
  if (loaded !== undefined) return loaded
  const definition = protoLoader.loadSync([...PROTO_FILES], OPTIONS)
  const v1 = (grpc.loadPackageDefinition(definition) as unknown as { outrider: { v1: Record<string, grpc.ServiceClientConstructor> } }).outrider.v1
  const pick = (name: string): grpc.ServiceClientConstructor => {
    const s = v1[name]
    if (s === undefined) throw new Error(`outrider.v1.${name} is missing from ${PROTO_DIR}`)
    return s
  }
  loaded = { ConfigDiscovery: pick('ConfigDiscovery'), Operator: pick('Operator'), Telemetry: pick('Telemetry') }
  return loaded
}
