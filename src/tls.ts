import { readFile } from 'node:fs/promises'
import type { SecureContextOptions } from 'node:tls'
import type { Config, ListenTlsConfig, UpstreamTlsConfig } from './config/schema.ts'
import { ConfigError } from './errors.ts'

/**
 * Reads a listener's certificate, key and client CA. Done for every config
 * (re)load, so a renewed certificate is picked up by a reload (SIGHUP or file
 * change) without dropping connections. An unreadable file is a ConfigError
 * naming the config path, like any other config mistake.
 */
export async function loadListenTls (tls: ListenTlsConfig, source: string): Promise<SecureContextOptions & { requestCert: boolean, ca?: Buffer }> {
  const read = async (file: string, path: string): Promise<Buffer> => {
    try {
      return await readFile(file)
    } catch (err) {
      throw new ConfigError(source, [{ path, expected: `a readable PEM file (${(err as NodeJS.ErrnoException).code ?? 'error'}: ${file})` }], { cause: err })
    }
  }
  const [cert, key, ca] = await Promise.all([
    read(tls.cert, 'listen.tls.cert'),
    read(tls.key, 'listen.tls.key'),
    tls.clientCa === undefined ? undefined : read(tls.clientCa, 'listen.tls.clientCa'),
  ])
  return { cert, key, ca, requestCert: ca !== undefined, minVersion: tls.minVersion }
}

/** What undici's `connect` option takes for TLS to upstream endpoints. */
export interface UpstreamTlsOptions {
  ca?: Buffer
  cert?: Buffer
  key?: Buffer
  servername?: string
  rejectUnauthorized: boolean
}

/** Reads a cluster's CA bundle and client certificate (mTLS) once per snapshot. */
export async function loadUpstreamTls (tls: UpstreamTlsConfig, source: string, clusterIndex: number): Promise<UpstreamTlsOptions> {
  const read = async (file: string | undefined, field: string): Promise<Buffer | undefined> => {
    if (file === undefined) return undefined
    try {
      return await readFile(file)
    } catch (err) {
      throw new ConfigError(source, [{ path: `clusters[${clusterIndex}].tls.${field}`, expected: `a readable PEM file (${(err as NodeJS.ErrnoException).code ?? 'error'}: ${file})` }], { cause: err })
    }
  }
  const [ca, cert, key] = await Promise.all([read(tls.ca, 'ca'), read(tls.cert, 'cert'), read(tls.key, 'key')])
  return { ca, cert, key, servername: tls.servername, rejectUnauthorized: !tls.insecureSkipVerify }
}

/**
 * Reads every certificate, key and CA file `config` names, as building its
 * snapshot will: `outrider validate` and start-up report an unreadable one
 * as the ConfigError it is, before anything listens.
 */
export async function readTlsFiles (config: Config, source: string): Promise<void> {
  if (config.listen.tls !== undefined) await loadListenTls(config.listen.tls, source)
  for (const [i, c] of config.clusters.entries()) if (c.tls !== undefined) await loadUpstreamTls(c.tls, source, i)
}
