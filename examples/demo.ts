import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { startDemoUpstream } from './demo-upstream.ts'

// `npm run demo`: two demo upstreams and Outrider on the bundled example.
const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url))
const upstreams = await Promise.all([startDemoUpstream(9001, 'users-1'), startDemoUpstream(9002, 'users-2')])
const proxy = spawn(process.execPath, [here('../src/outrider.js'), '--config', here('./basic/outrider.yaml'), ...process.argv.slice(2)], { stdio: 'inherit' })
process.stdout.write('demo upstreams on 127.0.0.1:9001 and :9002; try:\n  curl -i http://localhost:8080/users/42\n  curl http://127.0.0.1:9901/clusters\n')
const stop = (signal: NodeJS.Signals): void => { proxy.kill(signal) }
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
process.on('SIGHUP', () => { proxy.kill('SIGHUP') })
proxy.on('exit', (code) => {
  for (const u of upstreams) u.close()
  process.exit(code ?? 0)
})
