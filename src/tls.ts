import { readFile } from 'node:fs/promises'
import type { SecureContextOptions } from 'node:tls'
import type { ListenTlsConfig } from './config/schema.ts'
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
