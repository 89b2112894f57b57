import { hash } from 'node:crypto'

/**
 * The form an API key is stored in: `sha256:` and the hex SHA-256 of the key.
 * A fast, unsalted hash is right here, unlike for passwords: API keys are
 * random tokens of 128 bits or more, so there is no dictionary to try and a
 * slow hash (argon2, bcrypt) would only add milliseconds to every request.
 * What the hash buys is that a leaked config, a config dump on the admin
 * port or a control-plane store never holds a usable key.
 *
 * @example
 * hashApiKey('k3y-from-openssl-rand') // 'sha256:5d4c…'
 * // From a shell, keeping the key out of the process list:
 * //   printf %s "$KEY" | node -e "let s='';process.stdin.on('data',(d)=>s+=d).on('end',()=>console.log('sha256:'+require('node:crypto').hash('sha256',s)))"
 */
export function hashApiKey (key: string): string {
  return `sha256:${hash('sha256', key)}`
}
